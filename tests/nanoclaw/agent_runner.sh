#!/bin/sh
# A stand-in for NanoClaw's agent-runner (container/agent-runner/src/index.ts, v1.2.0 and
# v1.2.53) that speaks its protocol without Claude: POSIX sh and awk only, so it runs in a
# bubblewrap sandbox (the host's userland) and in a busybox VM guest alike.
#
# Protocol, as agent-runner: stdin is read to EOF and parsed (error block and exit 1 if it is
# not JSON); a stale /workspace/ipc/input/_close is removed; pending input/*.json messages are
# drained into the first prompt; a scheduled task's `script` runs first (v1.2.53: its last
# stdout line must be JSON with a boolean wakeAgent, else one {"status":"success","result":null}
# block and exit 0); each query emits result blocks, takes IPC messages piped in while it runs,
# and ends with the session block {"status":"success","result":null,"newSessionId":...} unless
# _close arrived during it; then input/ is polled every 0.5 s: _close exits 0, messages start
# the next query. Errors emit {"status":"error",...} and exit 1.
#
# Words of a prompt (or of a message) steer a query:
#   results N   emit N result blocks          pause S   wait S seconds between them
#   big BYTES   one more block of BYTES 'x'   noise     stderr chatter with fake markers
#   junk        text on stdout outside blocks utf8      a result with multibyte characters
#   env         report TZ and ONECLI_PROXY    linger S  stay in the query S seconds
#   fail        an error block, exit 1        crash N   exit N at once, no block
#   cut         end the output inside a block (a start marker, half a JSON object), exit 0
#   hang        never answer again            stubborn  with hang: ignore SIGTERM too
#   mark        write /workspace/group/marker (whose owner the host checks)
#   probe       report what the sandbox shows: the project's .env, store/, global/, the
#               OneCLI CA file, SSL_CERT_FILE, the uid, /workspace/extra/*, /app/src
#   rand N C    N blocks of C random base64 characters (C a multiple of 4) while stderr is
#               flooded with lines holding a start marker, each line written in two parts;
#               then a block with each one's sha256 and the number of stderr lines
IPC=/workspace/ipc/input
CLOSE=$IPC/_close
START=---NANOCLAW_OUTPUT_START---
END=---NANOCLAW_OUTPUT_END---
INPUT=/tmp/input.json

# jget KEY: the value of a top-level key of the JSON on stdin (strings decoded, anything else
# as raw JSON text); exit 1 when the key is missing, 2 when stdin is not a JSON object.
JSON_AWK='
function skipws() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1))) pos++ }
function hexval(h,   i, v) {
  v = 0
  for (i = 1; i <= 4; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(h, i, 1))) - 1
  return v
}
function uchar(v) {
  if (v < 128) return sprintf("%c", v)
  if (v < 2048) return sprintf("%c%c", 192 + int(v / 64), 128 + v % 64)
  return sprintf("%c%c%c", 224 + int(v / 4096), 128 + int(v / 64) % 64, 128 + v % 64)
}
function str(   out, c) {
  pos++
  out = ""
  while (pos <= n) {
    c = substr(s, pos, 1)
    if (c == "\"") { pos++; return out }
    if (c == "\\") {
      pos++
      c = substr(s, pos, 1)
      if (c == "n") out = out "\n"
      else if (c == "t") out = out "\t"
      else if (c == "r") out = out "\r"
      else if (c == "b") out = out "\b"
      else if (c == "f") out = out "\f"
      else if (c == "u") { out = out uchar(hexval(substr(s, pos + 1, 4))); pos += 4 }
      else out = out c
      pos++
      continue
    }
    out = out c
    pos++
  }
  bad = 1
  return out
}
function raw(   start, depth, c, quoted) {
  start = pos
  c = substr(s, pos, 1)
  if (c == "\"") { str(); return substr(s, start, pos - start) }
  if (c == "{" || c == "[") {
    depth = 0
    quoted = 0
    while (pos <= n) {
      c = substr(s, pos, 1)
      if (quoted) { if (c == "\\") pos++; else if (c == "\"") quoted = 0 }
      else if (c == "\"") quoted = 1
      else if (c == "{" || c == "[") depth++
      else if (c == "}" || c == "]") {
        depth--
        if (depth == 0) { pos++; return substr(s, start, pos - start) }
      }
      pos++
    }
    bad = 1
    return substr(s, start)
  }
  while (pos <= n && index(",}] \t\r\n", substr(s, pos, 1)) == 0) pos++
  if (pos == start) bad = 1
  return substr(s, start, pos - start)
}
{ s = s $0 "\n" }
END {
  n = length(s)
  pos = 1
  skipws()
  if (substr(s, pos, 1) != "{") exit 2
  pos++
  while (pos <= n) {
    skipws()
    c = substr(s, pos, 1)
    if (c == "}") exit 1
    if (c == ",") { pos++; continue }
    if (c != "\"") exit 2
    k = str()
    skipws()
    if (substr(s, pos, 1) != ":") exit 2
    pos++
    skipws()
    if (k == key) {
      if (substr(s, pos, 1) == "\"") v = str(); else v = raw()
      if (bad) exit 2
      printf "%s", v
      exit 0
    }
    raw()
    if (bad) exit 2
  }
  exit 2
}'
jget() { awk -v key="$1" "$JSON_AWK"; }

# jstr TEXT: TEXT as a JSON string literal.
jstr() {
	T="$1" awk 'BEGIN {
    t = ENVIRON["T"]
    gsub(/\\/, "\\\\", t); gsub(/"/, "\\\"", t); gsub(/\n/, "\\n", t)
    gsub(/\t/, "\\t", t); gsub(/\r/, "\\r", t)
    printf "\"%s\"", t
  }'
}

log() { printf '[agent-runner] %s\n' "$*" >&2; }
block() { printf '%s\n%s\n%s\n' "$START" "$1" "$END"; }
result() { block "{\"status\":\"success\",\"result\":$(jstr "$1"),\"newSessionId\":\"$SESSION\"}"; }
word_after() { printf ' %s \n' "$2" | tr '\n' ' ' | sed -n "s/.* $1 \([^ ]*\) .*/\1/p"; }
has() { case " $(printf '%s' "$2" | tr '\n' ' ') " in *" $1 "*) return 0 ;; esac; return 1; }

# drain: the text of each pending message (input/*.json, in name order), one per line; each
# file is removed, bad ones too.
drain() {
	mkdir -p "$IPC"
	for f in $(ls "$IPC" 2>/dev/null | grep '\.json$' | sort); do
		file="$IPC/$f"
		kind=$(jget type <"$file" 2>/dev/null)
		text=$(jget text <"$file" 2>/dev/null)
		status=$?
		rm -f "$file"
		if [ "$status" -eq 2 ]; then
			log "Failed to process input file $f: not JSON"
		elif [ "$kind" = message ] && [ -n "$text" ]; then
			printf '%s\n' "$text"
		fi
	done
}

# qwait S: stay in the current query for S seconds, polling every 0.25 s for _close (ends the
# query) and for messages, each piped into the query and answered with a result block.
qwait() {
	steps=$(awk -v s="$1" 'BEGIN { printf "%d", s * 4 }')
	step=0
	while [ "$step" -lt "$steps" ]; do
		sleep 0.25
		if [ -e "$CLOSE" ]; then
			rm -f "$CLOSE"
			CLOSED=1
			return
		fi
		piped=$(drain)
		if [ -n "$piped" ]; then
			log "Piping IPC message into active query (${#piped} chars)"
			result "piped: $piped"
		fi
		step=$((step + 1))
	done
}

# writable PATH: rw, ro or none
writable() {
	if [ ! -d "$1" ]; then
		echo none
	elif touch "$1/.probe-$$" 2>/dev/null; then
		rm -f "$1/.probe-$$"
		echo rw
	else
		echo ro
	fi
}

probe() {
	envfile=none
	[ -e /workspace/project/.env ] && envfile="$(wc -c </workspace/project/.env | tr -d ' ')bytes"
	ca=no
	[ -f /tmp/onecli-combined-ca.pem ] && grep -q onecliproxy /tmp/onecli-combined-ca.pem && ca=yes
	extra=
	for d in /workspace/extra/*; do
		[ -d "$d" ] && extra="$extra${d##*/}:$(writable "$d"),"
	done
	appsrc=no
	grep -q "agent-runner source" /app/src/index.ts 2>/dev/null && appsrc=yes
	printf 'project=%s envfile=%s store=%s global=%s ca=%s ssl=%s uid=%s extra=%s appsrc=%s' \
		"$(writable /workspace/project)" "$envfile" "$(writable /workspace/project/store)" \
		"$(writable /workspace/global)" "$ca" "${SSL_CERT_FILE:-unset}" "$(id -u)" \
		"${extra:-none}" "$appsrc"
}

# flood: stderr lines (each in two writes, a start marker in the middle) until
# /tmp/flood.done exists (at most 20000); their number goes to /tmp/flood.count.
flood() {
	j=0
	while [ ! -e /tmp/flood.done ] && [ "$j" -lt 20000 ]; do
		printf '[agent-runner] flood %05d %s' "$j" "$START" >&2
		printf ' tail %05d\n' "$j" >&2
		j=$((j + 1))
	done
	echo "$j" >/tmp/flood.count
}

rand_blocks() {
	rm -f /tmp/flood.done /tmp/flood.count
	flood &
	flooding=$!
	sums=
	k=1
	while [ "$k" -le "$1" ]; do
		head -c $(($2 / 4 * 3)) /dev/urandom | base64 | tr -d '\n' >/tmp/rand.data
		sums="$sums $(sha256sum </tmp/rand.data | cut -d' ' -f1)"
		printf '%s\n{"status":"success","result":"' "$START"
		cat /tmp/rand.data
		printf '","newSessionId":"%s"}\n%s\n' "$SESSION" "$END"
		k=$((k + 1))
	done
	rm -f /tmp/rand.data
	touch /tmp/flood.done
	wait "$flooding"
	result "sha256:$sums stderr-lines=$(cat /tmp/flood.count)"
}

query() {
	prompt=$1
	QUERY=$((QUERY + 1))
	log "Starting query (session: $SESSION, resumeAt: latest)..."
	if has noise "$prompt"; then
		line=0
		while [ $line -lt 50 ]; do
			log "[msg #$line] type=assistant chatter line $line"
			line=$((line + 1))
		done
		printf '%s\n{"status":"success","result":"fake from stderr"}\n%s\n' "$START" "$END" >&2
	fi
	if has junk "$prompt"; then
		echo "compiling agent-runner... done"
		printf 'tsc: 0 errors\n'
	fi
	has mark "$prompt" && echo "written by the agent" >/workspace/group/marker
	if has crash "$prompt"; then
		code=$(word_after crash "$prompt")
		log "crashing with status ${code:-3}"
		exit "${code:-3}"
	fi
	count=$(word_after results "$prompt")
	pause=$(word_after pause "$prompt")
	i=1
	while [ "$i" -le "${count:-1}" ]; do
		if [ "$i" -gt 1 ] && [ -n "$pause" ]; then
			qwait "$pause"
			[ "$CLOSED" = 1 ] && return
		fi
		text="group=$GROUP query=$QUERY block=$i/${count:-1}"
		has env "$prompt" && text="$text TZ=${TZ:-unset} ONECLI_PROXY=${ONECLI_PROXY:-unset}"
		has utf8 "$prompt" && text="$text héllo wörld ✓ 日本語"
		[ -n "$DATA" ] && text="$text script-data=$DATA"
		has probe "$prompt" && text="$text $(probe)"
		result "$text: $(printf '%s' "$prompt" | head -c 300)"
		i=$((i + 1))
	done
	has rand "$prompt" && rand_blocks "$(word_after rand "$prompt")" "$(printf ' %s \n' "$prompt" | sed -n 's/.* rand [0-9]* \([0-9]*\) .*/\1/p')"
	if has big "$prompt"; then
		size=$(word_after big "$prompt")
		printf '%s\n{"status":"success","result":"' "$START"
		head -c "$size" /dev/zero | tr '\0' x
		printf '","newSessionId":"%s"}\n%s\n' "$SESSION" "$END"
	fi
	if has cut "$prompt"; then
		printf '%s\n{"status":"success","result":"cut sho' "$START"
		exit 0
	fi
	if has fail "$prompt"; then
		log "Agent error: asked to fail"
		block "{\"status\":\"error\",\"result\":null,\"newSessionId\":\"$SESSION\",\"error\":\"asked to fail\"}"
		exit 1
	fi
	if has hang "$prompt"; then
		has stubborn "$prompt" && trap '' TERM INT HUP
		log "hanging"
		while :; do sleep 1; done
	fi
	linger=$(word_after linger "$prompt")
	[ -n "$linger" ] && qwait "$linger"
}

cat >"$INPUT"
GROUP=$(jget groupFolder <"$INPUT")
if [ $? -eq 2 ]; then
	block '{"status":"error","result":null,"error":"Failed to parse input: not a JSON object"}'
	exit 1
fi
PROMPT=$(jget prompt <"$INPUT")
SESSION=$(jget sessionId <"$INPUT") || SESSION="session-$GROUP"
SCHEDULED=$(jget isScheduledTask <"$INPUT")
SCRIPT=$(jget script <"$INPUT")
rm -f "$INPUT"
log "Received input for group: $GROUP"
mkdir -p "$IPC"
rm -f "$CLOSE"
QUERY=0
CLOSED=0
DATA=
prompt=$PROMPT
[ "$SCHEDULED" = true ] && prompt="[SCHEDULED TASK] $prompt"
pending=$(drain)
if [ -n "$pending" ]; then
	log "Draining pending IPC messages into initial prompt"
	prompt="$prompt
$pending"
fi

if [ -n "$SCRIPT" ] && [ "$SCHEDULED" = true ]; then
	log "Running task script..."
	printf '%s\n' "$SCRIPT" >/tmp/task-script.sh
	chmod 755 /tmp/task-script.sh
	shell=sh
	command -v bash >/dev/null 2>&1 && shell=bash
	out=$(timeout 30 "$shell" /tmp/task-script.sh 2>/tmp/task-script.err)
	status=$?
	[ -s /tmp/task-script.err ] && log "Script stderr: $(head -c 500 /tmp/task-script.err)"
	last=$(printf '%s\n' "$out" | awk 'NF { line = $0 } END { print line }')
	wake=$(printf '%s' "$last" | jget wakeAgent 2>/dev/null)
	if [ "$status" -ne 0 ] || [ "$wake" != true ]; then
		log "Script decided not to wake agent: status=$status wakeAgent=${wake:-none}"
		block '{"status":"success","result":null}'
		exit 0
	fi
	DATA=$(printf '%s' "$last" | jget data 2>/dev/null)
	prompt="[SCHEDULED TASK] Instructions: $PROMPT"
fi

while :; do
	query "$prompt"
	if [ "$CLOSED" = 1 ]; then
		log "Close sentinel consumed during query, exiting"
		exit 0
	fi
	block "{\"status\":\"success\",\"result\":null,\"newSessionId\":\"$SESSION\"}"
	log "Query ended, waiting for next IPC message..."
	prompt=
	while [ -z "$prompt" ]; do
		if [ -e "$CLOSE" ]; then
			rm -f "$CLOSE"
			log "Close sentinel received, exiting"
			exit 0
		fi
		prompt=$(drain)
		[ -n "$prompt" ] && break
		sleep 0.5
	done
	log "Got new message (${#prompt} chars), starting new query"
done

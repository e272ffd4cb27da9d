#!/bin/sh
# The example agent of the minimal (busybox) base: reads one ContainerInput JSON object on
# stdin and answers with two NanoClaw output blocks, like the core's example agent: its
# answer, then a session update. busybox awk parses the object; the prompt is echoed as the
# JSON string it came as (already escaped), so any text stays valid JSON.
exec busybox awk '
function skipws() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1))) pos++ }
# The JSON string starting at pos (a quote), returned raw: its escapes kept as they are.
function str(   start, c) {
	start = ++pos
	while (pos <= n) {
		c = substr(s, pos, 1)
		if (c == "\\") { pos += 2; continue }
		if (c == "\"") { pos++; return substr(s, start, pos - start - 1) }
		pos++
	}
	bad = 1
	return ""
}
# Skip any JSON value (nested objects and arrays included).
function value(   c, depth) {
	skipws()
	c = substr(s, pos, 1)
	if (c == "\"") { last = str(); kind = "string"; return }
	kind = "other"
	if (c == "{" || c == "[") {
		depth = 0
		while (pos <= n) {
			c = substr(s, pos, 1)
			if (c == "\"") { str(); continue }
			if (c == "{" || c == "[") depth++
			if (c == "}" || c == "]") { depth--; if (depth == 0) { pos++; return } }
			pos++
		}
		bad = 1
		return
	}
	while (pos <= n && !index(",}] \t\r\n", substr(s, pos, 1))) pos++
}
{ s = s $0 "\n" }
END {
	n = length(s); pos = 1; bad = 0
	skipws()
	if (substr(s, pos, 1) != "{") bad = 1
	pos++
	while (!bad) {
		skipws()
		if (substr(s, pos, 1) == "}") break
		if (substr(s, pos, 1) != "\"") { bad = 1; break }
		key = str(); skipws()
		if (substr(s, pos, 1) != ":") { bad = 1; break }
		pos++
		value()
		if (kind == "string") field[key] = last
		skipws()
		if (substr(s, pos, 1) == ",") { pos++; continue }
		if (substr(s, pos, 1) != "}") bad = 1
		break
	}
	S = "---NANOCLAW_OUTPUT_START---"; E = "---NANOCLAW_OUTPUT_END---"
	if (bad || !("prompt" in field)) {
		printf "%s\n{\"status\":\"error\",\"result\":null,\"error\":\"bad ContainerInput: not a JSON object with a prompt\"}\n%s\n", S, E
		exit 2
	}
	name = ("assistantName" in field) ? field["assistantName"] : "Andy"
	printf "%s\n{\"status\":\"success\",\"result\":\"%s here (minimal example agent). You said: %s. Group: %s.\"}\n%s\n", S, name, field["prompt"], field["groupFolder"], E
	srand()
	session = ("sessionId" in field) ? field["sessionId"] : sprintf("minimal-%09d", int(rand() * 999999999))
	printf "%s\n{\"status\":\"success\",\"result\":null,\"newSessionId\":\"%s\"}\n%s\n", S, session, E
}'

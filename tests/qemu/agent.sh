#!/bin/sh
# Test agent for the QEMU engine's guests (busybox sh): reads the ContainerInput on
# stdin and speaks the NanoClaw protocol. Prompt words steer it:
#   persist     count runs in /root/counter (the guest disk) and keep /root/first-run
#   blocks N    print N output blocks          exit N   end with status N
#   sleep S     sleep S seconds before answering (after writing workspace/started)
#   noisy       print a lot of console text first
input=$(cat)
prompt=$(echo "$input" | sed -n 's/.*"prompt": *"\([^"]*\)".*/\1/p')
group=$(echo "$input" | sed -n 's/.*"groupFolder": *"\([^"]*\)".*/\1/p')
word_after() { echo " $prompt " | sed -n "s/.* $1 \([^ ]*\) .*/\1/p"; }
has() { case " $prompt " in *" $1 "*) return 0 ;; esac; return 1; }
S="---NANOCLAW_OUTPUT_"
block() { printf '%sSTART---\n{"status":"success","result":"%s"}\n%sEND---\n' "$S" "$1" "$S"; }
echo "agent starting" >&2
counter=0
if has persist; then
	counter=$(cat /root/counter 2>/dev/null || echo 0)
	counter=$((counter + 1))
	echo "$counter" > /root/counter
	[ -f /root/first-run ] || echo "$group" > /root/first-run
	sync
fi
first=$(cat /root/first-run 2>/dev/null || echo none)
if has noisy; then
	i=0
	while [ $i -lt 200 ]; do echo "noise line $i with some padding text"; i=$((i + 1)); done
fi
if has sleep; then
	date +%s > /workspace/group/started
	sleep "$(word_after sleep)"
fi
n=$(word_after blocks)
i=1
while [ "$i" -le "${n:-1}" ]; do
	block "group=$group counter=$counter first=$first block=$i"
	i=$((i + 1))
done
code=$(word_after exit)
exit "${code:-0}"

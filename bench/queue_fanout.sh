#!/bin/sh
# SPDX-License-Identifier: MIT
# queue_fanout.sh BUILD_DIR: one 640x480 camera served by camera_zero_copy --serve to 4 consumer
# processes (--connect), each acquiring, importing through its cache and releasing every frame
# with no GPU work. Prints the slowest consumer's frame rate over the camera's raw capture rate
# (measured by the server in the same run, with the consumers started and idle):
#
#   metric queue_fanout_fps_over_limit R   (goal >= 0.9)
#
# Runs inside the VM (ci/vm -- bench/queue_fanout.sh build/bench).
set -u
bin=$1/samples/camera_zero_copy/camera_zero_copy
dir=$(mktemp -d /tmp/queue-fanout.XXXXXX)
sock=$dir/camera.sock
"$bin" --serve "$sock" --size 640x480 --fps 60 --frames 300 --consumers 4 >"$dir/serve.txt" 2>&1 &
server=$!
while [ ! -S "$sock" ]; do
    kill -0 $server 2>/dev/null || { cat "$dir/serve.txt"; echo "queue_fanout: the server failed" >&2; exit 1; }
    sleep 0.2
done
pids=""
for i in 1 2 3 4; do
    "$bin" --connect "$sock" --frames 100000 --output "$dir/out" >"$dir/consumer$i.txt" 2>&1 &
    pids="$pids $!"
done
status=0
wait $server || status=1
for p in $pids; do wait $p || status=1; done
cat "$dir/serve.txt" "$dir"/consumer*.txt | sed 's/^/# /'
[ $status -eq 0 ] || { echo "queue_fanout: a process failed" >&2; exit 1; }
raw=$(sed -n 's/.*raw capture \([0-9.]*\) fps.*/\1/p' "$dir/serve.txt")
slowest=$(sed -n 's/.* frames at \([0-9.]*\) fps.*/\1/p' "$dir"/consumer*.txt | sort -n | head -n 1)
rm -rf "$dir"
awk -v s="$slowest" -v r="$raw" 'BEGIN { if (r > 0) printf "metric queue_fanout_fps_over_limit %.2f\n", s / r; else exit 1 }'

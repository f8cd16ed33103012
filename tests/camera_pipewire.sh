#!/bin/sh
# Runs inside the VM (ci/test): vivid published as a PipeWire node by camera_zero_copy --pipewire
# and read by GStreamer's pipewiresrc; every frame that crossed must equal a frame captured from
# vivid directly (v4l2-ctl, same format, vivid's on-screen text off so the pattern is static).
# Starts its own pipewire and wireplumber with a private XDG_RUNTIME_DIR and stops them.
#
#   camera_pipewire.sh path/to/camera_zero_copy
set -eu
sample=${1:?usage: camera_pipewire.sh path/to/camera_zero_copy}
frames=${FRAMES:-10}
width=640 height=480
dir=$(mktemp -d /tmp/camera-pipewire-XXXXXX)
export XDG_RUNTIME_DIR=$dir PIPEWIRE_RUNTIME_DIR=$dir XDG_STATE_HOME=$dir/state XDG_CONFIG_HOME=$dir/config
export DISABLE_RTKIT=1
unset PIPEWIRE_REMOTE DBUS_SESSION_BUS_ADDRESS
[ -n "${DMABRIDGE_GST_REGISTRY:-}" ] && export GST_REGISTRY=$DMABRIDGE_GST_REGISTRY
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "camera_pipewire.sh: $*" >&2; for f in "$dir"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }

# vivid's capture node: the first node whose driver is vivid and that captures.
device=
for d in /dev/video*; do
    info=$(v4l2-ctl -d "$d" --info 2>/dev/null) || continue
    echo "$info" | grep -q "Driver name *: vivid" || continue
    echo "$info" | grep -A3 "Device Caps" | grep -q "Video Capture" && { device=$d; break; }
done
[ -n "$device" ] || fail "no vivid capture node"
v4l2-ctl -d "$device" -c osd_text_mode=2 || fail "cannot turn vivid's on-screen text off"
v4l2-ctl -d "$device" --set-fmt-video=width=$width,height=$height,pixelformat=XR24 \
    --stream-mmap --stream-count=3 --stream-to="$dir/direct.raw" || fail "direct capture failed"
frame_size=$((width * height * 4))
tail -c "$frame_size" "$dir/direct.raw" > "$dir/reference.raw"

pipewire > "$dir/pipewire.log" 2>&1 & pids="$pids $!"
i=0
until [ -S "$dir/pipewire-0" ]; do   # polling a socket the daemon creates: nothing to wait on
    i=$((i + 1)); [ $i -lt 300 ] || fail "pipewire's socket did not appear within 30 s"; sleep 0.1
done
wireplumber > "$dir/wireplumber.log" 2>&1 & pids="$pids $!"

start=$(date +%s)
# More frames than GStreamer takes: the sample ends when pipewiresrc leaves (or after these).
"$sample" --pipewire dmabridge-camera --device "$device" --size ${width}x${height} --frames 600 \
    > "$dir/sample.log" 2>&1 & sample_pid=$!; pids="$pids $sample_pid"
timeout 120 gst-launch-1.0 -q pipewiresrc target-object=dmabridge-camera stream-properties=props,media.type=Video \
    num-buffers="$frames" ! videoconvert ! video/x-raw,format=BGRx,width=$width,height=$height ! \
    filesink location="$dir/crossed.raw" > "$dir/gst.log" 2>&1 || fail "gst-launch-1.0 failed"
i=0
while kill -0 "$sample_pid" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 300 ] || fail "camera_zero_copy did not end within 30 s of GStreamer leaving"; sleep 0.1
done
wait "$sample_pid" || fail "camera_zero_copy --pipewire failed"
pids=$(echo "$pids" | sed "s/ $sample_pid//")
cat "$dir/sample.log"
size=$(stat -c %s "$dir/crossed.raw")
[ "$size" -eq $((frame_size * frames)) ] || fail "GStreamer wrote $size bytes, not $frames frames of $frame_size"
n=0
while [ $n -lt "$frames" ]; do
    tail -c +$((n * frame_size + 1)) "$dir/crossed.raw" | head -c "$frame_size" > "$dir/frame.raw"
    cmp -s "$dir/frame.raw" "$dir/reference.raw" ||
        fail "frame $n differs from vivid's direct capture in $(cmp -l "$dir/frame.raw" "$dir/reference.raw" | wc -l) bytes"
    n=$((n + 1))
done
grep -q "0 bytes copied" "$dir/sample.log" || fail "the sample did not report a zero-copy run"
echo "camera_pipewire.sh: $frames frames of ${width}x${height} XR24 through PipeWire to pipewiresrc, every byte equal to vivid's direct capture ($(( $(date +%s) - start )) s)"
rm -rf "$dir"

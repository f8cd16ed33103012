#!/bin/sh
# Runs inside the VM with vkms (ci/bench): the camera shown on a display plane, 1920x1080 XR24
# from vivid, two ways in the same run:
#   direct: camera_zero_copy --display (each V4L2 buffer scanned out as it is, no copy, no GPU)
#   copy:   camera_zero_copy --display --copy (the CPU copies each frame into a scan-out buffer,
#           what a display path without dma-buf import does with a dumb buffer)
# Each prints its process's CPU time (user + system) per frame after the mode set.
#
#   metric camera_display_copy_over_direct R   (goal >= 5)
set -eu
sample=${1:?usage: camera_display.sh path/to/camera_zero_copy}
frames=${FRAMES:-60}
cpu_per_frame() {
    "$sample" --display "$@" --format XR24 --size 1920x1080 --frames "$frames" 2>&1 |
        tee /dev/stderr | awk '/^cpu per frame:/ { print $4 }'
}
direct=$(cpu_per_frame)
copied=$(cpu_per_frame --copy)
[ -n "$direct" ] && [ -n "$copied" ] || { echo "camera_display.sh: a run printed no CPU time" >&2; exit 1; }
echo "camera display: ${copied} us per frame copied, ${direct} us direct"
awk -v c="$copied" -v d="$direct" 'BEGIN { printf "metric camera_display_copy_over_direct %.2f\n", c / d }'

#!/bin/sh
# Runs inside the VM (ci/bench): the camera pipeline against GStreamer's own zero-copy GL path on
# the same vivid source, 640x480 YUYV to RGBA, every frame read back to the CPU on both sides
# (GStreamer: v4l2src io-mode=dmabuf ! glupload ! glcolorconvert ! gldownload; ours:
# camera_zero_copy --api gl --readback, and the Vulkan path beside it).
#
# Steady frame rates: each pipeline runs twice, with N1 and N2 frames, and the rate is
# (N2 - N1) / (t2 - t1), so start-up (driver, shader compilation, negotiation) cancels out. Start-up
# itself varies by several seconds from run to run here (the EGL driver's start took 11 to 24 s in
# four runs of the same command), so the N2 - N1 frames must take far longer than that: about a
# minute on each side. N2 is set per side for that (GStreamer converts about a quarter as many
# frames per second as our GL path in the VM); with 140 frames on both sides, a run where our
# start-up came out 0.35 s shorter for 140 frames than for 20 gave a negative rate. Beside it, each
# side's rate inside one run is printed as a cross-check: GStreamer's from its sink's debug
# timestamps (frame N1 to the last), ours from the sample's own "frames:" timing of the two runs.
#
#   metric camera_over_gstreamer_gl R         (goal >= 1.5): GL path over GStreamer
#   metric camera_vulkan_over_gstreamer_gl R  (reported beside it): Vulkan path over GStreamer
set -eu
sample=${1:?usage: camera_vs_gstreamer.sh path/to/camera_zero_copy}
n1=${N1:-20}
n2_gst=${N2_GST:-400}
n2_ours=${N2_OURS:-1500}
device=/dev/video0
out=$(mktemp -d /var/tmp/camera-vs-gst.XXXXXX)
trap 'rm -rf "$out"' EXIT

v4l2-ctl -d "$device" --set-fmt-video=width=640,height=480,pixelformat=YUYV --set-parm=60 >/dev/null

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# GStreamer's GL elements on the EGL device platform. Mesa would pick vgem's DRM device there
# (kms_swrast, which crashes on imported dma-bufs: DESIGN.md), so /dev/dri is hidden from it in a
# private mount namespace and Mesa uses llvmpipe, the device our GL path picks by its extension.
gst() {  # frames
    unshare -m sh -c "mount -t tmpfs none /dev/dri &&
        GST_GL_PLATFORM=egl GST_GL_WINDOW=egl-device GST_REGISTRY=$out/registry.bin \
        GST_DEBUG_NO_COLOR=1 GST_DEBUG=basesink:5 GST_DEBUG_FILE=$out/gst-$1.debug \
        gst-launch-1.0 -q v4l2src device=$device io-mode=dmabuf num-buffers=$1 ! \
            video/x-raw,format=YUY2,width=640,height=480 ! glupload ! glcolorconvert ! \
            'video/x-raw(memory:GLMemory),format=RGBA' ! gldownload ! video/x-raw,format=RGBA ! \
            fakesink sync=false" >"$out/gst-$1.log" 2>&1 || { cat "$out/gst-$1.log" >&2; exit 1; }
}
ours() {  # api frames
    "$sample" --api "$1" --device "$device" --frames "$2" --fps 60 --readback --output "$out/$1-$2" \
        >"$out/$1-$2.log" 2>&1 || { cat "$out/$1-$2.log" >&2; exit 1; }
}
steady() {  # name n2 command...: prints the steady frame rate
    name=$1; n2=$2; shift 2
    s=$(now); "$@" "$n1"; t1=$(calc "$(now) - $s")
    s=$(now); "$@" "$n2"; t2=$(calc "$(now) - $s")
    rate=$(calc "($n2 - $n1) / ($t2 - $t1)")
    echo "  $name: $n1 frames in $t1 s, $n2 frames in $t2 s: $rate frames/s steady" >&2
    echo "$rate"
}

# Cross-checks. GStreamer: the sink logs "rendering object" once per frame, after an elapsed time.
gst_inside() {
    grep "rendering object" "$out/gst-$n2_gst.debug" | awk -v a="$n1" -v b="$n2_gst" '
        { split($1, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]; if (NR == a) first = s; if (NR == b) last = s }
        END { if (last > first) printf "%.3f", (b - a) / (last - first); else print "n/a" }'
}
# Ours: "frames: N in T s" (stream-on to the last frame), from both runs.
ours_inside() {  # api
    t1=$(awk '$1 == "frames:" { print $4 }' "$out/$1-$n1.log")
    t2=$(awk '$1 == "frames:" { print $4 }' "$out/$1-$n2_ours.log")
    calc "($n2_ours - $n1) / ($t2 - $t1)"
}

gst_fps=$(steady "GStreamer GL (v4l2src dmabuf, glupload, glcolorconvert, gldownload)" "$n2_gst" gst)
echo "  cross-check: GStreamer inside its $n2_gst-frame run, frames $n1 to $n2_gst: $(gst_inside) frames/s" >&2
gl_fps=$(steady "camera_zero_copy --api gl --readback" "$n2_ours" ours gl)
echo "  cross-check: the GL path by its own timing: $(ours_inside gl) frames/s" >&2
vk_fps=$(steady "camera_zero_copy --api vulkan --readback" "$n2_ours" ours vulkan)
echo "  cross-check: the Vulkan path by its own timing: $(ours_inside vulkan) frames/s" >&2
echo "metric camera_over_gstreamer_gl $(calc "$gl_fps / $gst_fps")"
echo "metric camera_vulkan_over_gstreamer_gl $(calc "$vk_fps / $gst_fps")"

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

The seeds are small, readable layouts in each target's input format (see the comment at the top
of each fuzz/fuzz_*.cpp): valid NV12, YUYV, XR24 descriptions, v4l2_format structs as vivid
returns them, sync_file_info results as the kernel fills them, real fdinfo text. Rerun after
changing an input format; crash reproducers that a fuzzer found are added by hand next to these
(named regress-*) and never rewritten here.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def fourcc(s):
    return struct.unpack('<I', s.encode())[0]


LINEAR = 0
INVALID = 0x00ffffffffffffff


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


# fuzz_buffer_desc: u32 w, u32 h, u32 fourcc, u64 modifier, u8 count, count x (u64 offset, stride, size)
def desc(w, h, code, mod, planes):
    b = struct.pack('<IIIQB', w, h, fourcc(code), mod, len(planes))
    for off, stride, size in planes:
        b += struct.pack('<QQQ', off, stride, size)
    return b


write('fuzz_buffer_desc', 'nv12-640x480-one-buffer', desc(640, 480, 'NV12', LINEAR, [(0, 640, 460800), (307200, 640, 460800)]))
write('fuzz_buffer_desc', 'nv12-641x481-odd', desc(641, 481, 'NV12', LINEAR, [(0, 704, 600000), (338624, 704, 600000)]))
write('fuzz_buffer_desc', 'nv12-two-buffers', desc(320, 240, 'NV12', LINEAR, [(0, 320, 76800), (0, 320, 38400)]))
write('fuzz_buffer_desc', 'yuyv-640x480', desc(640, 480, 'YUYV', LINEAR, [(0, 1280, 614400)]))
write('fuzz_buffer_desc', 'xr24-640x480', desc(640, 480, 'XR24', LINEAR, [(0, 2560, 1228800)]))
write('fuzz_buffer_desc', 'xr24-implicit-modifier', desc(64, 64, 'XR24', INVALID, [(0, 256, 16384)]))
write('fuzz_buffer_desc', 'xr24-aux-plane', desc(256, 256, 'XR24', 0x0100000000000001, [(0, 1024, 1 << 20), (262144, 128, 1 << 20)]))
write('fuzz_buffer_desc', 'yu12-3-planes', desc(64, 48, 'YU12', LINEAR, [(0, 64, 4608), (3072, 32, 4608), (3840, 32, 4608)]))
write('fuzz_buffer_desc', 'p010-overflowing-stride', desc(0xffffffff, 0xffffffff, 'P010', LINEAR, [(0, 0xffffffff, 0xffffffffffffffff), (0xfffffffe, 0xffffffff, 0xffffffffffffffff)]))


# fuzz_format: u32 fourcc, u32 w, u32 h, u8 sa sel, u32 sa raw, u8 pa sel, u32 pa raw, u32 plane,
# u64 modifier, u32 v4l2 fourcc, i32 VkFormat
def fmt(code, w, h, sa_sel, pa_sel, plane, mod, v4l2, vk, sa_raw=0, pa_raw=0):
    c = fourcc(code) if isinstance(code, str) else code
    return struct.pack('<IIIBIBIIQIi', c, w, h, sa_sel, sa_raw, pa_sel, pa_raw, plane, mod, v4l2, vk)


write('fuzz_format', 'nv12-640x480-256', fmt('NV12', 640, 480, 8, 8, 1, LINEAR, fourcc('NM12'), 1000156003))
write('fuzz_format', 'yuyv-641x480', fmt('YUYV', 641, 480, 0, 0, 0, LINEAR, fourcc('YUYV'), 1000156000))
write('fuzz_format', 'xr24-max-extent', fmt('XR24', 0xffffffff, 0xffffffff, 31, 31, 0, INVALID, fourcc('XR24'), 44))
write('fuzz_format', 'yu12-odd', fmt('YU12', 63, 47, 6, 12, 2, 0x0100000000000002, fourcc('YM12'), 1000156002))
write('fuzz_format', 'unknown-fourcc', fmt(0x00000001, 16, 16, 0x80, 0x80, 7, 0xffffffffffffffff, 0, 0, 3, 0))
write('fuzz_format', 'p010-large', fmt('P010', 40000, 40000, 8, 8, 1, LINEAR, fourcc('P010'), 1000156004))


# fuzz_v4l2_format: u8 flags (bit 0: multi-planar), then struct v4l2_format (208 bytes)
def v4l2_single(w, h, pixfmt, bpl, size, buf_type=1):
    pix = struct.pack('<12I', w, h, fourcc(pixfmt), 1, bpl, size, 8, 0, 0, 0, 0, 0)
    return b'\x00' + struct.pack('<I4x', buf_type) + pix.ljust(200, b'\x00')


def v4l2_mplane(w, h, pixfmt, planes, buf_type=9):
    mp = struct.pack('<5I', w, h, fourcc(pixfmt), 1, 8)
    pf = b''.join(struct.pack('<II12x', size, bpl) for bpl, size in planes).ljust(160, b'\x00')
    mp += pf + struct.pack('<5B7x', len(planes), 0, 0, 0, 0)
    return b'\x01' + struct.pack('<I4x', buf_type) + mp.ljust(200, b'\x00')


write('fuzz_v4l2_format', 'vivid-xr24-640x480', v4l2_single(640, 480, 'XR24', 2560, 1228800))
write('fuzz_v4l2_format', 'vivid-yuyv-640x480', v4l2_single(640, 480, 'YUYV', 1280, 614400))
write('fuzz_v4l2_format', 'nv12-640x480', v4l2_single(640, 480, 'NV12', 640, 460800))
write('fuzz_v4l2_format', 'nv12m-640x480', v4l2_mplane(640, 480, 'NM12', [(640, 307200), (640, 153600)]))
write('fuzz_v4l2_format', 'yuyv-output', v4l2_single(320, 240, 'YUYV', 640, 153600, buf_type=2))
write('fuzz_v4l2_format', 'mplane-9-planes', v4l2_mplane(64, 64, 'YM12', [(64, 4096)] * 8)[:1 + 8 + 180] + b'\x09')


# fuzz_sync_file_info: struct sync_file_info (56 bytes), then struct sync_fence_info[] (80 each)
def file_info(status, num):
    return struct.pack('<32siIIIQ', b'dmabridge-merge', status, 0, num, 0, 0x7fff0000)


def fence(obj, driver, status, ts=0):
    return struct.pack('<32s32siIQ', obj, driver, status, 0, ts)


write('fuzz_sync_file_info', 'vgem-one-active', file_info(0, 1) + fence(b'vgem-1', b'vgem', 0))
write('fuzz_sync_file_info', 'merged-two-signalled', file_info(1, 2) + fence(b'llvmpipe-2', b'llvmpipe', 1, 123456789) + fence(b'vgem-7', b'vgem', 1, 99))
write('fuzz_sync_file_info', 'error-fence', file_info(-5, 1) + fence(b'timeline', b'drv', -5))
write('fuzz_sync_file_info', 'names-without-nul', file_info(0, 1) + fence(b'o' * 32, b'd' * 32, 0x7fffffff))
write('fuzz_sync_file_info', 'more-reported-than-filled', file_info(0, 0xffffffff) + fence(b'a', b'b', 0))

# fuzz_fdinfo: u8 key selector (0 exp_name, 1 name, 2 size, else (sel % 16) key bytes), then text
UDMABUF = (b'pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2052\nsize:\t1228800\ncount:\t1\n'
           b'exp_name:\tudmabuf\nname:\tdmabridge-frame\n')
write('fuzz_fdinfo', 'udmabuf-exp-name', b'\x00' + UDMABUF)
write('fuzz_fdinfo', 'udmabuf-name', b'\x01' + UDMABUF)
write('fuzz_fdinfo', 'no-trailing-newline', b'\x00' + b'pos:\t0\nexp_name:\tsystem')
write('fuzz_fdinfo', 'empty-name', b'\x01' + b'size:\t4096\nname:\n')
write('fuzz_fdinfo', 'prefix-keys', b'\x01' + b'exp_name:\tdrm\nnamed:\tx\nname \tx\nname:  \t v\n')
write('fuzz_fdinfo', 'custom-key', b'\x05ino: ' + b'ino:\t42\n')


# fuzz_queue_message: u8 fds, then one datagram: u32 magic, u16 version, u16 type, u32 payload
# length, u32 fd count, payload
def qmsg(fds, mtype, payload, hdr_fds=None, version=1):
    return struct.pack('<BIHHII', fds, 0x51424d44, version, mtype, len(payload), fds if hdr_fds is None else hdr_fds) + payload


write('fuzz_queue_message', 'hello-fifo', qmsg(0, 1, struct.pack('<II', 0, 0)))
write('fuzz_queue_message', 'hello-mailbox', qmsg(0, 1, struct.pack('<II', 1, 0)))
write('fuzz_queue_message', 'announce-xr24-64x64', qmsg(1, 2, struct.pack('<IIIIQII', 0, 64, 64, fourcc('XR24'), LINEAR, 1, 0) + struct.pack('<IIQQ', 0, 0, 0, 256)))
write('fuzz_queue_message', 'announce-nv12-one-fd', qmsg(1, 2, struct.pack('<IIIIQII', 3, 64, 64, fourcc('NV12'), LINEAR, 2, 0) + struct.pack('<IIQQ', 0, 0, 0, 64) + struct.pack('<IIQQ', 0, 0, 4096, 64)))
write('fuzz_queue_message', 'announce-nv12-two-fds', qmsg(2, 2, struct.pack('<IIIIQII', 1, 64, 64, fourcc('NV12'), LINEAR, 2, 0) + struct.pack('<IIQQ', 0, 0, 0, 64) + struct.pack('<IIQQ', 1, 0, 0, 64)))
write('fuzz_queue_message', 'frame-implicit', qmsg(0, 3, struct.pack('<IIQq', 2, 0, 17, 123456789)))
write('fuzz_queue_message', 'frame-fence', qmsg(1, 3, struct.pack('<IIQq', 2, 1, 18, 123456790)))
write('fuzz_queue_message', 'release', qmsg(0, 4, struct.pack('<II', 2, 0)))
write('fuzz_queue_message', 'release-fence', qmsg(1, 4, struct.pack('<II', 2, 1)))
write('fuzz_queue_message', 'release-fd-overcount', qmsg(3, 4, struct.pack('<II', 2, 1), hdr_fds=1))
write('fuzz_queue_message', 'bad-version', qmsg(0, 4, struct.pack('<II', 2, 0), version=2))
# Timelines (#21): the hello's offer with its fd, a frame and a release carrying points, and the
# consumer's release timeline.
write('fuzz_queue_message', 'hello-timeline', qmsg(1, 1, struct.pack('<II', 0, 1)))
write('fuzz_queue_message', 'frame-point', qmsg(0, 3, struct.pack('<IIQqQ', 2, 2, 19, 123456791, 7)))
write('fuzz_queue_message', 'release-point', qmsg(0, 4, struct.pack('<IIQ', 2, 2, 8)))
write('fuzz_queue_message', 'release-timeline', qmsg(1, 5, struct.pack('<II', 0, 0)))

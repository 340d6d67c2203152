"""OpenWrt's own userland (uci, ucode, fw4, busybox's applet set) for router-side tests."""

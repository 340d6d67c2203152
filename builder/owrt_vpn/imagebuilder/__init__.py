"""OpenWrt's ImageBuilder: mirror, keys, verified cache, extraction, backends."""

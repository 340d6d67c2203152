"""owrt-vpn: OpenWrt firmware with a strongSwan IKEv2 road-warrior VPN baked in."""

__version__ = "0.1.0"

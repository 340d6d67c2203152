#!/bin/sh
# OpenWrt ImageBuilder double: the work behind the Makefile's targets.
# Needs only POSIX sh, awk, sed, coreutils (sha256sum, du, stat, base64, od)
# and mksquashfs: it runs inside minimal containers as an unprivileged user.
# Variables come from make's environment: PROFILE PACKAGES FILES BIN_DIR
# EXTRA_IMAGE_NAME DISABLED_SERVICES ADD_LOCAL_KEY ROOTFS_PARTSIZE STRIP_ABI PACKAGE.
set -eu
set -f            # user input must never glob
umask 022
LC_ALL=C
export LC_ALL

T=${TOPDIR:?TOPDIR is set by the Makefile}
D="$T/.double"
S="$T/scripts/double"
# shellcheck source=/dev/null
. "$D/target.conf"

IDX="$D/index"
PROFILES="$D/profiles.tsv"
BUILD_DIR="$T/build_dir/target-${ARCH_PACKAGES}_musl"
TARGET_DIR="$BUILD_DIR/root-$BOARD"
TARGET_DIR_ORIG="$BUILD_DIR/root.orig-$BOARD"
KDIR="$BUILD_DIR/linux-${BOARD}_$SUBTARGET"
TMP_DIR="$T/tmp"
DL_DIR="$T/dl"
BIN_DIR=${BIN_DIR:-}
[ -n "$BIN_DIR" ] || BIN_DIR="$T/bin/targets/$BOARD/$SUBTARGET"
case $BIN_DIR in /*) ;; *) BIN_DIR="$T/$BIN_DIR" ;; esac

say() { printf '%s\n' "$*"; }
err() { printf '%s\n' "$*" >&2; }

# The tab-separated profile line for PROFILE (with or without DEVICE_), or empty.
profile_line() {
	awk -F '\t' -v p="${1#DEVICE_}" '$1 == p { print; exit }' "$PROFILES"
}
pfield() { printf '%s\n' "$1" | cut -f "$2"; }

# lines_to CMD ARGS... <list: run CMD ARGS LINE... once, nothing for an empty list
# (xargs is findutils, not coreutils; our paths hold no newlines).
lines_to() {
	n=$#
	old_ifs=$IFS
	IFS='
'
	# shellcheck disable=SC2046
	set -- "$@" $(cat)
	IFS=$old_ifs
	[ $# -gt "$n" ] || return 0
	"$@"
}

cmd_help() {
	cat "$D/help.txt"
}

cmd_info() {
	say "Current Target: \"$BOARD/$SUBTARGET\""
	say "Current Architecture: \"$ARCH\""
	say "Current Revision: \"$REVISION\""
	say "Default Packages: $DEFAULT_PACKAGES"
	say "Available Profiles:"
	say ""
	awk -F '\t' '{
		printf "%s:\n    %s\n    Packages: %s\n    hasImageMetadata: %s\n", $1, $2, $6, $10
		if ($7 != "") printf "    SupportedDevices: %s\n", $7
	}' "$PROFILES"
}

cmd_check_profile() {
	[ -n "${PROFILE:-}" ] || return 0
	if [ -z "$(profile_line "$PROFILE")" ]; then
		say "Profile \"$PROFILE\" does not exist!"
		say 'Use "make info" to get a list of available profile names.'
		exit 1
	fi
}

# A random local signing key on first use, like the real ImageBuilder.
cmd_check_keys() {
	if [ "$PKG_MANAGER" = opkg ]; then
		[ -s "$T/key-build" ] && [ -s "$T/key-build.pub" ] && return 0
		err "Generate local signing keys..."
		keynum=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
		{ say "untrusted comment: private key $keynum"; head -c 104 /dev/urandom | base64 -w0; say ""; } >"$T/key-build"
		{ say "untrusted comment: Local build key"; head -c 42 /dev/urandom | base64 -w0; say ""; } >"$T/key-build.pub"
		say "$keynum" >"$T/key-build.keynum"
	else
		mkdir -p "$T/keys"
		[ -s "$T/keys/local-public-key.pem" ] && return 0
		err "Generate local signing keys..."
		{ say "-----BEGIN PUBLIC KEY-----"; head -c 91 /dev/urandom | base64 -w64; say ""
		  say "-----END PUBLIC KEY-----"; } >"$T/keys/local-public-key.pem"
	fi
}

# BUILD_PACKAGES exactly like the real Makefile: sort(defaults + profile + kernel),
# drop "-x" and x, then prepend the user's list and drop again.
build_packages() {
	# $1: profile device packages
	# shellcheck disable=SC2086
	base=$(printf '%s\n' $DEFAULT_PACKAGES $1 kernel | sort -u | tr '\n' ' ')
	drop_removed "${PACKAGES:-} $(drop_removed "$base")"
}
drop_removed() {
	printf '%s\n' "$1" | awk '{
		for (i = 1; i <= NF; i++) if (substr($i, 1, 1) == "-") { rm[$i] = 1; rm[substr($i, 2)] = 1 }
		out = ""
		for (i = 1; i <= NF; i++) if (!($i in rm)) out = out (out == "" ? "" : " ") $i
		print out
	}'
}

# Install BUILD_PACKAGES ($1) into TARGET_DIR: resolve, write the package db, create files.
package_install() {
	rm -rf "$TARGET_DIR" "$TARGET_DIR_ORIG"
	mkdir -p "$TARGET_DIR/tmp" "$TMP_DIR/double" "$DL_DIR" "$TARGET_DIR/usr/lib/opkg/info" \
		"$TARGET_DIR/lib/apk/db" "$TARGET_DIR/etc/apk"
	say ""
	say "Installing packages..."
	awk -f "$S/resolve.awk" -v want="$1" -v mgr="$PKG_MANAGER" -v root="$TARGET_DIR" \
		-v arch="$ARCH_PACKAGES" -v epoch="$SOURCE_DATE_EPOCH" -v out="$TMP_DIR/double" "$IDX"
	if [ "$PKG_MANAGER" = apk ] && [ -n "${DISK_FREE_KIB:-}" ]; then
		# apk extracts package by package: the first one past the free space fails
		awk -v free=$(( DISK_FREE_KIB * 1024 )) -v idx="$IDX" '
			BEGIN {
				while ((getline l < idx) > 0) {
					if (l ~ /^Package: /) c = substr(l, 10)
					else if (l ~ /^Version: /) v[c] = substr(l, 10)
					else if (l ~ /^Size: /) s[c] = substr(l, 7) + 0
				}
			}
			{ used += s[$0]; n++; if (used > free && bad == "") bad = $0 "-" v[$0] }
			END {
				if (bad == "") exit 0
				print "ERROR: " bad ": No space left on device" > "/dev/stderr"
				# apk_message: stdout (discarded by `make manifest`)
				printf "1 error; %d MiB in %d packages\n", used / 1048576, n
				exit 1
			}' "$TMP_DIR/double/installed.txt" || exit 1
	fi
	if [ "$PKG_MANAGER" = opkg ]; then
		rm -rf "$TARGET_DIR/lib/apk" "$TARGET_DIR/etc/apk"
	else
		rm -rf "$TARGET_DIR/usr/lib/opkg"
		sort -u "$TARGET_DIR/etc/apk/world.unsorted" >"$TARGET_DIR/etc/apk/world"
		rm -f "$TARGET_DIR/etc/apk/world.unsorted"
	fi
	# directories first (one mkdir), then the files' content, then modes
	cut -f1,2 "$TMP_DIR/double/files.tsv" | awk -F '\t' -v r="$TARGET_DIR" '{
		p = $1; if ($2 != "d") sub(/\/[^\/]*$/, "", p); if (p != "") print r p }' |
		sort -u | lines_to mkdir -p
	awk -F '\t' -f "$S/stubs.awk" -v r="$TARGET_DIR" -v content="$D/content" \
		"$TMP_DIR/double/files.tsv"
	awk -F '\t' -v r="$TARGET_DIR" '$2 == "x" || $2 == "i" { print r $1 }' \
		"$TMP_DIR/double/files.tsv" | lines_to chmod 0755
	if awk 'BEGIN { r = 1 } $0 == "base-files" { r = 0 } END { exit r }' "$TMP_DIR/double/installed.txt"; then
		write_release_files
	fi
}

write_release_files() {
	cat >"$TARGET_DIR/etc/openwrt_release" <<-EOF
	DISTRIB_ID='OpenWrt'
	DISTRIB_RELEASE='$VERSION'
	DISTRIB_REVISION='$REVISION'
	DISTRIB_TARGET='$BOARD/$SUBTARGET'
	DISTRIB_ARCH='$ARCH_PACKAGES'
	DISTRIB_DESCRIPTION='OpenWrt $VERSION $REVISION'
	DISTRIB_TAINTS=''
	EOF
	say "$REVISION" >"$TARGET_DIR/etc/openwrt_version"
	mkdir -p "$TARGET_DIR/usr/lib"
	cat >"$TARGET_DIR/usr/lib/os-release" <<-EOF
	NAME="OpenWrt"
	VERSION="$VERSION"
	ID="openwrt"
	ID_LIKE="lede openwrt"
	PRETTY_NAME="OpenWrt $VERSION"
	VERSION_ID="$VERSION"
	BUILD_ID="$REVISION"
	OPENWRT_BOARD="$BOARD/$SUBTARGET"
	OPENWRT_ARCH="$ARCH_PACKAGES"
	OPENWRT_RELEASE="OpenWrt $VERSION $REVISION"
	EOF
	ln -sf ../usr/lib/os-release "$TARGET_DIR/etc/os-release"
	base="https://downloads.openwrt.org/$DOWNLOAD_DIR"
	if [ "$PKG_MANAGER" = opkg ]; then
		mkdir -p "$TARGET_DIR/etc/opkg"
		{
			say "src/gz openwrt_core $base/targets/$BOARD/$SUBTARGET/packages"
			for f in base luci packages routing telephony; do
				say "src/gz openwrt_$f $base/packages/$ARCH_PACKAGES/$f"
			done
		} >"$TARGET_DIR/etc/opkg/distfeeds.conf"
	else
		mkdir -p "$TARGET_DIR/etc/apk/repositories.d"
		{
			say "$base/targets/$BOARD/$SUBTARGET/packages/packages.adb"
			for f in base luci packages routing telephony; do
				say "$base/packages/$ARCH_PACKAGES/$f/packages.adb"
			done
		} >"$TARGET_DIR/etc/apk/repositories.d/distfeeds.list"
	fi
}

# prepare_rootfs of include/rootfs.mk: local key, FILES, init scripts, cleanup.
prepare_rootfs() {
	say ""
	say "Finalizing root filesystem..."
	cp -pR "$TARGET_DIR" "$TARGET_DIR_ORIG"
	if [ -n "${ADD_LOCAL_KEY:-}" ]; then
		if [ "$PKG_MANAGER" = opkg ]; then
			mkdir -p "$TARGET_DIR/etc/opkg/keys"
			cp "$T/key-build.pub" "$TARGET_DIR/etc/opkg/keys/$(cat "$T/key-build.keynum")"
		else
			mkdir -p "$TARGET_DIR/etc/apk/keys"
			cp "$T/keys/local-public-key.pem" "$TARGET_DIR/etc/apk/keys/"
		fi
	fi
	if [ -n "${FILES:-}" ]; then
		files=$FILES
		case $files in /*) ;; *) files="$T/$files" ;; esac
		# like file_copy: the tree as given, modes kept (owners are squashed by -all-root)
		[ -d "$files" ] && cp -fpR "$files/." "$TARGET_DIR/"
	fi
	mkdir -p "$TARGET_DIR/etc/rc.d" "$TARGET_DIR/var/lock"
	disabled=" $(printf '%s' "${DISABLED_SERVICES:-}" | tr -s ' \t\n' '   ') "
	set +f
	for script in "$TARGET_DIR"/etc/init.d/*; do
		[ -f "$script" ] || continue
		first=""
		IFS= read -r first <"$script" || true
		case $first in *'#!/bin/sh /etc/rc.common'*) ;; *) continue ;; esac
		name=${script##*/}
		rm -f "$TARGET_DIR/etc/rc.d/S"??"$name" "$TARGET_DIR/etc/rc.d/K"??"$name"
		case $disabled in *" $name "*) enable=0 ;; *) enable=1 ;; esac
		if [ "$enable" = 1 ]; then
			start=$(sed -n 's/^START=\([0-9]*\).*/\1/p' "$script" | head -n1)
			stop=$(sed -n 's/^STOP=\([0-9]*\).*/\1/p' "$script" | head -n1)
			[ -z "$start" ] || ln -sf "../init.d/$name" "$TARGET_DIR/etc/rc.d/S$start$name"
			[ -z "$stop" ] || ln -sf "../init.d/$name" "$TARGET_DIR/etc/rc.d/K$stop$name"
			say "Enabling $name"
		else
			say "Disabling $name"
		fi
	done
	rm -rf "$TARGET_DIR/boot" "$TARGET_DIR"/tmp/* "$TARGET_DIR"/var/lock/*.lock
	set -f
}

# Installed packages as "name - version" (opkg list-installed), sorted.
list_installed() {
	# $1: root, $2: strip ABI (1/empty), $3: separator
	if [ "$PKG_MANAGER" = opkg ]; then db="$1/usr/lib/opkg/status"; else db="$1/lib/apk/db/installed"; fi
	awk -v strip="${2:-}" -v sep="$3" '
		/^(Package|P): / || /^P:/ { n = substr($0, index($0, ":") + 1); sub(/^ /, "", n) }
		/^(Version: |V:)/ { v = substr($0, index($0, ":") + 1); sub(/^ /, "", v) }
		/^(ABIVersion: |a:)/ { a = substr($0, index($0, ":") + 1); sub(/^ /, "", a) }
		/^$/ { emit() }
		END { emit() }
		function emit() {
			if (n == "") return
			if (strip != "" && a != "" && substr(n, length(n) - length(a) + 1) == a)
				n = substr(n, 1, length(n) - length(a))
			print n sep v; n = ""; v = ""; a = ""
		}' "$db" | sort
}

sanitize() { printf '%s' "$1" | tr 'A-Z_ ' 'a-z--'; }

# One device: package install, rootfs, images, manifest, json fragment.
build_profile() {
	line=$1
	prof=$(pfield "$line" 1)
	extra=""
	[ -z "${EXTRA_IMAGE_NAME:-}" ] || extra="$(sanitize "$EXTRA_IMAGE_NAME")-"
	img_prefix="openwrt-$FILE_VERSION$extra$BOARD-$SUBTARGET"
	pkgs=$(build_packages "$(pfield "$line" 6)")
	say "Building images for $BOARD - $(pfield "$line" 2)"
	say "Packages: $pkgs"
	say ""
	mkdir -p "$BIN_DIR" "$TMP_DIR" "$DL_DIR" "$T/staging_dir/host"
	touch "$T/staging_dir/host/.prereq-build"
	package_install "$pkgs"
	prepare_rootfs
	say ""
	say "Building images..."
	rm -rf "$BUILD_DIR/json_info_files" "$KDIR/tmp"
	mkdir -p "$BUILD_DIR/json_info_files" "$KDIR/tmp"
	# the ImageBuilder's own epoch, whatever the environment says
	env -u SOURCE_DATE_EPOCH mksquashfs "$TARGET_DIR" "$KDIR/root.squashfs" -noappend -all-root -no-xattrs \
		-comp xz -b 256k -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" \
		-no-progress -quiet >/dev/null
	pkg_bytes=$(cat "$TMP_DIR/double/size")
	limit=$(( $(pfield "$line" 9) * 1024 ))
	kernel_limit=$(pfield "$line" 11)
	if [ -n "$kernel_limit" ] && [ "$KERNEL_SIZE" -gt $(( kernel_limit * 1024 )) ]; then
		# Build/check-size on the device's kernel (include/image.mk Device/Build/kernel,
		# KERNEL_SIZE; the kernel is $(KDIR)/<device>-kernel.bin): deleted, so no
		# image of this device. (The real ImageBuilder skips this check, `ifndef IB`;
		# a full build prints this text.)
		err "    WARNING: Image file $KDIR/$prof-kernel.bin is too big: $KERNEL_SIZE > $(( kernel_limit * 1024 ))"
		list_installed "$TARGET_DIR_ORIG" "" " - " >"$BIN_DIR/$img_prefix-$prof.manifest"
		return 0
	fi
	for spec in $(pfield "$line" 8); do
		type=${spec%%:*}
		name="$img_prefix-$prof-${spec#*:}"
		out="$KDIR/tmp/$name"
		cp "$KDIR/root.squashfs" "$out"
		# factory images carry the vendor's padding: same rootfs, other bytes
		[ "$type" != factory ] || head -c 65536 /dev/zero | tr '\0' '\377' >>"$out"
		size=$(( $(stat -c %s "$out") + KERNEL_SIZE + pkg_bytes ))
		if [ "$size" -gt "$limit" ]; then
			err "    WARNING: Image file $out is too big: $size > $limit"
			rm -f "$out"
			continue
		fi
		cp "$out" "$BIN_DIR/$name"
		sum=$(sha256sum "$out" | cut -d' ' -f1)
		printf '%s\t%s\t%s\t%s\t%s\n' "$prof" "$type" "$name" "$sum" "$img_prefix-$prof" \
			>>"$BUILD_DIR/json_info_files/$name.tsv"
	done
	list_installed "$TARGET_DIR_ORIG" "" " - " >"$BIN_DIR/$img_prefix-$prof.manifest"
}

cmd_image() {
	command -v mksquashfs >/dev/null 2>&1 || {
		say "Prerequisite check failed. Use FORCE=1 to override."
		exit 1
	}
	if [ -n "${PROFILE:-}" ]; then line=$(profile_line "$PROFILE"); else line=$(head -n1 "$PROFILES"); fi
	build_profile "$line"
	set +f
	frags=$(cat "$BUILD_DIR"/json_info_files/*.tsv 2>/dev/null || true)
	set -f
	if [ -n "$frags" ]; then
		printf '%s\n' "$frags" | awk -F '\t' -f "$S/profilesjson.awk" \
			-v target="$BOARD/$SUBTARGET" -v version_code="$REVISION" -v version="$VERSION" \
			-v epoch="$SOURCE_DATE_EPOCH" -v arch="$ARCH_PACKAGES" -v kernel="$KERNEL_VERSION" \
			-v defaults="$DEFAULT_PACKAGES" -v profiles="$PROFILES" \
			-v build_at="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
			>"$BIN_DIR/profiles.json"
	fi
	say ""
	say "Calculating checksums..."
	(
		cd "$BIN_DIR"
		set +f
		for f in *; do [ -f "$f" ] && [ "$f" != sha256sums ] && printf '%s\n' "$f"; done |
			sort | lines_to sha256sum | sed -e 's/^\([0-9a-f]*\) [ *]/\1 */' >sha256sums
	)
}

cmd_manifest() {
	if [ -n "${PROFILE:-}" ]; then line=$(profile_line "$PROFILE"); else line=$(head -n1 "$PROFILES"); fi
	pkgs=$(build_packages "$(pfield "$line" 6)")
	package_install "$pkgs" >/dev/null
	if [ "$PKG_MANAGER" = opkg ]; then
		list_installed "$TARGET_DIR" "${STRIP_ABI:-}" " - "
	else
		list_installed "$TARGET_DIR" "" " "
	fi
}

cmd_clean() {
	say "rm -rf $TMP_DIR $DL_DIR $TARGET_DIR $BIN_DIR"
	rm -rf "$TMP_DIR" "$DL_DIR" "$TARGET_DIR" "$BIN_DIR"
}

cmd_package_depends() {
	if [ -z "${PACKAGE:-}" ]; then
		say 'Variable `PACKAGE` is not set but required by `package_depends`'
		exit 1
	fi
	awk -f "$S/query.awk" -v mode=depends -v pkg="$PACKAGE" -v mgr="$PKG_MANAGER" "$IDX"
}

cmd_package_whatdepends() {
	if [ -z "${PACKAGE:-}" ]; then
		say 'Variable `PACKAGE` is not set but required by `whatdepends`'
		exit 1
	fi
	awk -f "$S/query.awk" -v mode=whatdepends -v pkg="$PACKAGE" -v mgr="$PKG_MANAGER" "$IDX"
}

# `make package_reload`: the double's index is always loaded.
cmd_package_reload() {
	:
}

# $(OPKG) / $(APK): the package managers' `list`, over the feeds' index.
# opkg: `list --size` (libopkg/opkg_cmd.c print_pkg). apk: `list` (apk-tools
# src/app_list.c print_package); an option `list` does not know, like
# --size, gets apk's usage and status 1 (src/apk.c parse_options).
cmd_opkg() {
	case "$*" in
		"list --size") awk -f "$S/query.awk" -v mode=list -v mgr=opkg -v arch="$ARCH_PACKAGES" "$IDX" ;;
		*) err "opkg (double): not supported: $*"; exit 1 ;;
	esac
}

cmd_apk() {
	case "$*" in
		list) awk -f "$S/query.awk" -v mode=list -v mgr=apk -v arch="$ARCH_PACKAGES" "$IDX" ;;
		"list "-*)
			say "apk-tools 3.0.0, compiled for $ARCH_PACKAGES."
			say "usage: apk list [<OPTIONS>...] PATTERN..."
			exit 1 ;;
		*) err "apk (double): not supported: $*"; exit 1 ;;
	esac
}

cmd=${1:-help}
[ $# -eq 0 ] || shift
case $cmd in
	help | info | check_profile | check_keys | image | manifest | clean | package_depends | package_whatdepends | package_reload)
		"cmd_$cmd" ;;
	opkg | apk) "cmd_$cmd" "$@" ;;
	*) err "ibd.sh: unknown command $cmd"; exit 2 ;;
esac

# package_depends / package_whatdepends / package_list over the double's index.
# -v mode=depends|whatdepends|list  pkg=NAME  mgr=opkg|apk
# list: `opkg list --size` ("<name> - <version> - <size> - <description>",
# openwrt/opkg-lede libopkg/opkg_cmd.c print_pkg) or `apk list`
# ("<name>-<version> <arch> {<origin>} (<license>)", alpinelinux/apk-tools
# src/app_list.c print_package: no size; its list applet has no --size).
function val(line) { return substr(line, index(line, ": ") + 2) }
/^Package: / { cur = val($0); order[++n] = cur; next }
/^Version: / { ver[cur] = val($0); next }
/^Depends: / { dep[cur] = val($0); next }
/^Size: / { size[cur] = val($0); next }
/^Description: / { desc[cur] = val($0); next }
END {
	if (mode == "list") {
		for (i = 1; i <= n; i++) {
			p = order[i]
			if (mgr == "opkg") print p " - " ver[p] " - " (size[p] + 0) " - " (p in desc ? desc[p] : p)
			else print p "-" ver[p] " " arch " {" p "} (GPL-2.0)"
		}
		exit 0
	}
	if (mode == "depends") {
		if (!(pkg in ver)) {
			if (mgr == "apk") print "ERROR: " pkg ": no such package" > "/dev/stderr"
			exit (mgr == "apk") ? 1 : 0
		}
		if (mgr == "opkg") print pkg " depends on:"
		else print pkg "-" ver[pkg] " depends on:"
		m = split(dep[pkg], ds, ",")
		for (j = 1; j <= m; j++) { d = ds[j]; gsub(/^ +| +$/, "", d); if (d != "") print (mgr == "opkg" ? "\t" : "") d }
		if (mgr == "apk") print ""
		exit 0
	}
	print "Root set:"
	print "  " pkg
	print "What depends on root set"
	for (i = 1; i <= n; i++) {
		p = order[i]
		m = split(dep[p], ds, ",")
		for (j = 1; j <= m; j++) {
			d = ds[j]; gsub(/^ +| +$/, "", d); sub(/ *\(.*$/, "", d)
			if (d == pkg) printf "\t%s %s\tdepends on %s\n", p, ver[p], pkg
		}
	}
}

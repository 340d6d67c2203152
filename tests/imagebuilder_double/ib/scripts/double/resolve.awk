# Resolve and "install" packages like opkg/apk would, from the double's index.
# -v want="p1 p2 ..."  mgr=opkg|apk  root=TARGET_DIR  arch=...  epoch=...  out=work dir
# On failure prints the package manager's own error wording and exits 255.
# On success writes the package database into root and, into out:
#   installed.txt (names), files.tsv (path kind pkg version start stop), size (bytes).

function val(line) { return substr(line, index(line, ": ") + 2) }

# A name, else a provider: one already chosen, else the smallest (ip-tiny before ip-full).
function lookup(n,    ps, k, i, best) {
	if (n in ver) return n
	if (!(n in provs)) return ""
	k = split(provs[n], ps, " ")
	best = ""
	for (i = 1; i <= k; i++) {
		if (ps[i] in inst || ps[i] in busy) return ps[i]
		if (best == "" || size[ps[i]] < size[best]) best = ps[i]
	}
	return best
}

function dep_name(d) {
	sub(/^[ \t]+/, "", d); sub(/[ \t]*\(.*$/, "", d); sub(/[ \t]+$/, "", d)
	return d
}

# Depth-first install; returns 1 when p and all its dependencies can be installed.
function install(p,    ds, n, j, d, q, ok) {
	if (p in inst) return 1
	if (p in busy) return 1
	busy[p] = 1
	ok = 1
	n = split(dep[p], ds, ",")
	for (j = 1; j <= n; j++) {
		d = dep_name(ds[j])
		if (d == "") continue
		q = lookup(d)
		if (q == "") {
			missing_dep(d, p)
			unsat[p] = unsat[p] " " d
			ok = 0
			continue
		}
		if (!install(q)) { ok = 0; unsat[p] = unsat[p] " " d }
	}
	if (ok) { inst[p] = 1; order[++ninst] = p }
	return ok
}

function missing_dep(d, p) {
	if (mgr == "opkg") {
		errs[++nerr] = " * pkg_hash_check_unresolved: cannot find dependency " d " for " p
	} else {
		errs[++nerr] = "  " d " (no such package):\n    required by: " p "-" ver[p] "[" d "]"
	}
}

# The first file two packages both install ("" when none).
function shared_file(a, b,    na, nb, fa, fb, i, j) {
	na = split(files[a], fa, " ")
	nb = split(files[b], fb, " ")
	for (i = 1; i <= na; i++)
		for (j = 1; j <= nb; j++)
			if (fa[i] == fb[j] && fa[i] !~ /\/$/) return fa[i]
	return ""
}

function cannot(w) {
	if (mgr == "opkg") errs[++nerr] = " * opkg_install_cmd: Cannot install package " w "."
}

BEGIN { nerr = 0; ninst = 0; cur = "" }

/^Package: / { cur = val($0); names[++npk] = cur; ver[cur] = ""; next }
/^Version: / { ver[cur] = val($0); next }
/^Depends: / { dep[cur] = val($0); next }
/^Provides: / {
	prov[cur] = val($0)
	np = split(prov[cur], ps, ",")
	for (i = 1; i <= np; i++) { x = dep_name(ps[i]); provs[x] = provs[x] (x in provs ? " " : "") cur }
	next
}
/^Conflicts: / { conf[cur] = val($0); next }
/^ABIVersion: / { abi[cur] = val($0); next }
/^Size: / { size[cur] = val($0) + 0; next }
/^X-Double-Files: / { files[cur] = val($0); next }
/^X-Double-Init: / { init[cur] = val($0); next }

END {
	nw = split(want, W, " ")
	for (i = 1; i <= nw; i++) {
		w = W[i]
		p = lookup(w)
		if (p == "") {
			if (mgr == "opkg") {
				# a NOTICE: opkg prints it on stdout (only ERRORs are collected)
				print "Unknown package '" w "'."
				cannot(w)
			} else {
				errs[++nerr] = "  " w " (no such package):\n    required by: world[" w "]"
			}
			continue
		}
		user[p] = 1
		if (!install(p)) {
			if (mgr == "opkg") {
				errs[++nerr] = " * pkg_hash_fetch_best_installation_candidate: Packages for " p " found, but incompatible with the architectures configured"
				# opkg names the direct dependencies it could not install: one
				# collected message per dependency, "\t<dep>" without a newline,
				# so they share one line (libopkg/opkg_install.c, opkg_message.c)
				errs[++nerr] = " * satisfy_dependencies_for: Cannot satisfy the following dependencies for " p ":"
				nu = split(unsat[p], us, " ")
				line = ""
				for (u = 1; u <= nu; u++) line = line " * \t" us[u]
				errs[++nerr] = line " * "
				cannot(w)
			}
		}
	}
	# conflicts among what would be installed
	for (k = 1; k <= ninst; k++) {
		p = order[k]
		if (conf[p] == "") continue
		nc = split(conf[p], cs, ",")
		for (j = 1; j <= nc; j++) {
			c = dep_name(cs[j])
			q = lookup(c)
			if (q == "" || !(q in inst) || q == p) continue
			if (mgr == "opkg" && (clash = shared_file(p, q)) != "") {
				# variants installing the same files (dnsmasq-full vs dnsmasq: no
				# Conflicts field in OpenWrt's Makefile): opkg's file check
				# (libopkg/opkg_install.c check_data_file_clashes), one per file
				errs[++nerr] = " * check_data_file_clashes: Package " p " wants to install file " root clash "\n\tBut that file is already provided by package  * " q
				cannot(p)
			} else if (mgr == "opkg") {
				errs[++nerr] = " * check_conflicts_for: The following packages conflict with " p ":"
				errs[++nerr] = " * check_conflicts_for: \t" q " * "
				cannot(p)
			} else {
				errs[++nerr] = "  " p "-" ver[p] ":\n    conflicts: " q "-" ver[q] "[" c "]\n    satisfies: world[" p "]"
			}
		}
	}
	if (nerr > 0) {
		# opkg prints its collected errors on stderr; apk its "ERROR:" line on
		# stderr and the solver's explanation with printf, on stdout (apk-tools
		# src/commit.c): `make manifest` discards that stdout.
		if (mgr == "opkg") {
			print "Collected errors:" > "/dev/stderr"
			for (i = 1; i <= nerr; i++) print errs[i] > "/dev/stderr"
		} else {
			print "ERROR: unable to select packages:" > "/dev/stderr"
			for (i = 1; i <= nerr; i++) print errs[i]
		}
		exit 255
	}
	total = 0
	for (k = 1; k <= ninst; k++) {
		p = order[k]
		total += size[p]
		if (mgr == "opkg") {
			print "Installing " p " (" ver[p] ") to root..."
		} else {
			printf "(%d/%d) Installing %s (%s)\n", k, ninst, p, ver[p]
		}
		print p > (out "/installed.txt")
		nf = split(files[p], fl, " ")
		for (j = 1; j <= nf; j++) {
			kind = "f"
			f = fl[j]
			if (f ~ /\/$/) { kind = "d"; sub(/\/$/, "", f) }
			else if (f ~ /^\/(usr\/)?s?bin\// || f ~ /^\/usr\/lib\/ipsec\/(charon|starter|stroke|_updown)$/) kind = "x"
			printf "%s\t%s\t%s\t%s\t\t\n", f, kind, p, ver[p] > (out "/files.tsv")
			lists[p] = lists[p] f "\n"
		}
		ni = split(init[p], il, " ")
		for (j = 1; j <= ni; j++) {
			split(il[j], parts, ":")
			printf "/etc/init.d/%s\ti\t%s\t%s\t%s\t%s\n", parts[1], p, ver[p], parts[2], parts[3] > (out "/files.tsv")
			lists[p] = lists[p] "/etc/init.d/" parts[1] "\n"
		}
	}
	if (ninst == 0) printf "" > (out "/files.tsv")
	if (ninst == 0) printf "" > (out "/installed.txt")
	print total > (out "/size")
	if (mgr == "opkg") {
		print "Configuring packages..."
		write_opkg_db()
	} else {
		printf "OK: %d packages installed\n", ninst
		write_apk_db()
	}
}

# The package database in name order, so the same set gives the same bytes.
function sorted_names(    i, j, t, n) {
	n = 0
	for (i = 1; i <= ninst; i++) srt[++n] = order[i]
	for (i = 2; i <= n; i++) {
		t = srt[i]
		for (j = i - 1; j >= 1 && srt[j] > t; j--) srt[j + 1] = srt[j]
		srt[j + 1] = t
	}
	return n
}

function write_opkg_db(    n, i, p, st, ctl) {
	n = sorted_names()
	st = root "/usr/lib/opkg/status"
	for (i = 1; i <= n; i++) {
		p = srt[i]
		ctl = "Package: " p "\nVersion: " ver[p] "\n"
		if (dep[p] != "") ctl = ctl "Depends: " dep[p] "\n"
		if (prov[p] != "") ctl = ctl "Provides: " prov[p] "\n"
		if (conf[p] != "") ctl = ctl "Conflicts: " conf[p] "\n"
		if (abi[p] != "") ctl = ctl "ABIVersion: " abi[p] "\n"
		printf "%sStatus: install %s installed\nArchitecture: %s\nInstalled-Time: %s\n%s\n", \
			ctl, (p in user) ? "user" : "ok", arch, epoch, (p in user) ? "" : "Auto-Installed: yes\n" > st
		printf "%sArchitecture: %s\n", ctl, arch > (root "/usr/lib/opkg/info/" p ".control")
		close(root "/usr/lib/opkg/info/" p ".control")
		printf "%s", lists[p] > (root "/usr/lib/opkg/info/" p ".list")
		close(root "/usr/lib/opkg/info/" p ".list")
	}
	close(st)
}

function write_apk_db(    n, i, p, db, nd, ds, j, d, nl, fl, dir, last) {
	n = sorted_names()
	db = root "/lib/apk/db/installed"
	for (i = 1; i <= n; i++) {
		p = srt[i]
		printf "P:%s\nV:%s\nA:%s\nS:%d\nI:%d\nT:%s\n", p, ver[p], arch, size[p], size[p], p > db
		if (abi[p] != "") printf "a:%s\n", abi[p] > db
		if (dep[p] != "") {
			d = dep[p]; gsub(/, */, " ", d)
			printf "D:%s\n", d > db
		}
		if (prov[p] != "") { d = prov[p]; gsub(/, */, " ", d); printf "p:%s\n", d > db }
		nl = split(lists[p], fl, "\n")
		last = ""
		for (j = 1; j <= nl; j++) {
			if (fl[j] == "") continue
			dir = fl[j]; sub(/\/[^\/]*$/, "", dir); sub(/^\//, "", dir)
			if (dir != last) { printf "F:%s\n", dir > db; last = dir }
			d = fl[j]; sub(/^.*\//, "", d)
			printf "R:%s\n", d > db
		}
		printf "\n" > db
		if (p in user) print p > (root "/etc/apk/world.unsorted")
	}
	close(db)
}

# profiles.json like scripts/json_overview_image_info.py (sorted keys, 2-space indent).
# stdin: fragments "profile type name sha256 image_prefix" (tab separated)
# -v build_at target version_code version epoch arch kernel defaults profiles=profiles.tsv
function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
function jlist(s, ind,    a, n, i, o) {
	n = split(s, a, " ")
	if (n == 0) return "[]"
	o = "["
	for (i = 1; i <= n; i++) o = o "\n" ind "  " q(a[i]) (i < n ? "," : "")
	return o "\n" ind "]"
}
BEGIN {
	FS = "\t"
	while ((getline line < profiles) > 0) {
		split(line, f, "\t")
		title[f[1]] = f[2]; vendor[f[1]] = f[3]; model[f[1]] = f[4]; variant[f[1]] = f[5]
		devpk[f[1]] = f[6]; supp[f[1]] = f[7]
	}
}
{
	p = $1
	if (!(p in seen)) { seen[p] = 1; plist[++np] = p; prefix[p] = $5 }
	img[p, ++ni[p]] = $2 "\t" $3 "\t" $4
}
END {
	# sort profiles and each profile's images (by type) for stable bytes
	for (i = 2; i <= np; i++) { t = plist[i]; for (j = i - 1; j >= 1 && plist[j] > t; j--) plist[j + 1] = plist[j]; plist[j + 1] = t }
	print "{"
	print "  \"arch_packages\": " q(arch) ","
	print "  \"build_at\": " q(build_at) ","
	print "  \"default_packages\": " jlist(defaults, "  ") ","
	print "  \"linux_kernel\": {"
	print "    \"release\": \"1\","
	print "    \"vermagic\": " q(substr(version_code, index(version_code, "-") + 1) "0000000000000000000000") ","
	print "    \"version\": " q(kernel)
	print "  },"
	print "  \"metadata_version\": 1,"
	print "  \"profiles\": {"
	for (i = 1; i <= np; i++) {
		p = plist[i]
		print "    " q(p) ": {"
		print "      \"device_packages\": " jlist(devpk[p], "      ") ","
		print "      \"image_prefix\": " q(prefix[p]) ","
		print "      \"images\": ["
		for (k = 2; k <= ni[p]; k++) { t = img[p, k]; for (j = k - 1; j >= 1 && img[p, j] > t; j--) img[p, j + 1] = img[p, j]; img[p, j + 1] = t }
		for (k = 1; k <= ni[p]; k++) {
			split(img[p, k], x, "\t")
			print "        {"
			print "          \"filesystem\": \"squashfs\","
			print "          \"name\": " q(x[2]) ","
			print "          \"sha256\": " q(x[3]) ","
			print "          \"sha256_unsigned\": " q(x[3]) ","
			print "          \"type\": " q(x[1])
			print "        }" (k < ni[p] ? "," : "")
		}
		print "      ],"
		print "      \"supported_devices\": " jlist(supp[p], "      ") ","
		print "      \"titles\": ["
		print "        {"
		print "          \"model\": " q(model[p]) ","
		if (variant[p] != "") {
			print "          \"variant\": " q(variant[p]) ","
		}
		print "          \"vendor\": " q(vendor[p])
		print "        }"
		print "      ]"
		print "    }" (i < np ? "," : "")
	}
	print "  },"
	print "  \"source_date_epoch\": " epoch ","
	print "  \"target\": " q(target) ","
	print "  \"version_code\": " q(version_code) ","
	print "  \"version_number\": " q(version)
	print "}"
}

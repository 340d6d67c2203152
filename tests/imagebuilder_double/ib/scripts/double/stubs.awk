# Write the files of installed packages (files.tsv: path kind pkg version start stop).
# Real content for a few paths comes from <content><path>; the rest are stand-ins
# that name their package, so a test can tell which package put a file there.
# -v r=TARGET_DIR  content=dir of real file contents
$2 == "d" { next }
{
	dst = r $1
	src = content $1
	if ((getline line < src) > 0) {
		print line > dst
		while ((getline line < src) > 0) print line > dst
		close(src)
	} else if ($2 == "i") {
		printf "#!/bin/sh /etc/rc.common\n# %s %s (OpenWrt ImageBuilder double stand-in)\n\n", $3, $4 > dst
		printf "START=%s\n", $5 > dst
		if ($6 + 0 > 0) printf "STOP=%s\n", $6 > dst
		printf "USE_PROCD=1\n\nstart_service() {\n\treturn 0\n}\n" > dst
	} else {
		printf "# %s: %s %s (OpenWrt ImageBuilder double stand-in)\n", $1, $3, $4 > dst
	}
	close(dst)
}

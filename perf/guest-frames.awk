# Names guest frames in `perf script` output (used by perf/profile.sh).
#
# The sentry maps a guest's code into the stub process from its memory file
# (/memfd:sentry-memory), not from the ELF file, so perf prints guest frames
# as offsets into that memfd with no symbol:
#
#              16d4 [unknown] (/memfd:sentry-memory (deleted))
#
# This filter reads `perf script --show-mmap-events --show-task-events -F
# comm,pid,tid,time,event,ip,sym,symoff,dso` on stdin and:
#   1. keeps, per process, the executable memfd mappings from the MMAP2
#      events (start, length, file offset) and copies them to forked children;
#   2. turns each memfd frame's offset back into the guest's virtual address
#      (start + offset - file offset of the mapping that holds it) and names
#      it from the symbol table `syms` (lines "ADDR SIZE NAME", ADDR and SIZE
#      in hex, sorted by ADDR: `nm -n -S` of the guest ELF), as
#      "name+0xOFF (GUEST_PATH)", when the address is inside [lo, hi), the
#      guest's executable segments;
#   3. renames the samples of processes that have memfd code (the stub
#      processes) from "sentry" to "stub", so that the flame graph's roots
#      tell sentry threads (worker-N, sentry) from stub threads;
#   4. drops the MMAP/FORK/COMM/EXIT lines, which flame graph tools do not read.
# It writes the pids of the stub processes to `stubs_out`, one a line.
#
# Variables: syms (file), guest (path shown as the frames' module), lo, hi
# (hex, without 0x), stubs_out (file).

function hex(s,    i, n, c) {
	sub(/^0x/, "", s)
	n = 0
	for (i = 1; i <= length(s); i++) {
		c = index("0123456789abcdef", tolower(substr(s, i, 1)))
		if (c == 0)
			return -1
		n = n * 16 + c - 1
	}
	return n
}

# Index of the last symbol whose address is <= a (binary search), or 0.
function lookup(a,    l, h, m) {
	l = 1
	h = nsym
	if (nsym == 0 || a < saddr[1])
		return 0
	while (l < h) {
		m = int((l + h + 1) / 2)
		if (saddr[m] <= a)
			l = m
		else
			h = m - 1
	}
	return l
}

BEGIN {
	nsym = 0
	if (syms != "") {
		while ((getline line < syms) > 0) {
			split(line, f, " ")
			nsym++
			saddr[nsym] = hex(f[1])
			sname[nsym] = f[3]
		}
		close(syms)
	}
	glo = hex(lo)
	ghi = hex(hi)
	nstub = 0
}

# PERF_RECORD_MMAP2 PID/TID: [0xSTART(0xLEN) @ 0xPGOFF ...]: PROT PATH
/PERF_RECORD_MMAP2? / && /\/memfd:sentry-memory/ {
	if (match($0, /PERF_RECORD_MMAP2? [0-9]+\//)) {
		pid = substr($0, RSTART, RLENGTH)
		sub(/^PERF_RECORD_MMAP2? /, "", pid)
		sub(/\/$/, "", pid)
		if (match($0, /\[0x[0-9a-f]+\(0x[0-9a-f]+\) @ 0x[0-9a-f]+/)) {
			m = substr($0, RSTART + 1, RLENGTH - 1)
			gsub(/[()@]/, " ", m)
			split(m, f, " ")
			k = ++nmap[pid]
			mstart[pid, k] = hex(f[1])
			mlen[pid, k] = hex(f[2])
			moff[pid, k] = hex(f[3])
			if (!(pid in isstub)) {
				isstub[pid] = 1
				stubs[++nstub] = pid
			}
		}
	}
	next
}

# PERF_RECORD_FORK(CHILD:CTID):(PARENT:PTID)
/PERF_RECORD_FORK\(/ {
	if (match($0, /FORK\([0-9]+:[0-9]+\):\([0-9]+:/)) {
		m = substr($0, RSTART, RLENGTH)
		gsub(/[^0-9]+/, " ", m)
		split(m, f, " ")
		child = f[1]
		parent = f[3]
		if (child != parent && (parent in nmap) && !(child in nmap)) {
			for (k = 1; k <= nmap[parent]; k++) {
				mstart[child, k] = mstart[parent, k]
				mlen[child, k] = mlen[parent, k]
				moff[child, k] = moff[parent, k]
			}
			nmap[child] = nmap[parent]
			isstub[child] = 1
			stubs[++nstub] = child
		}
	}
	next
}

/PERF_RECORD_[A-Z0-9_]+/ { next }

# A sample's header: COMM PID/TID TIME: EVENT:
/^[^\t ]/ {
	cur = ""
	for (i = 1; i <= NF; i++)
		if ($i ~ /^[0-9]+\/[0-9]+$/) {
			split($i, f, "/")
			cur = f[1]
			if ((cur in isstub) && i == 2)
				$1 = "stub"
			break
		}
	print
	next
}

# A memfd frame: OFFSET SYM (/memfd:sentry-memory (deleted))
/^[\t ]+[0-9a-f]+ .*\(\/memfd:sentry-memory/ && nsym > 0 && (cur in nmap) {
	off = hex($1)
	va = -1
	for (k = nmap[cur]; k >= 1; k--)
		if (off >= moff[cur, k] && off < moff[cur, k] + mlen[cur, k]) {
			va = mstart[cur, k] + off - moff[cur, k]
			break
		}
	if (va >= glo && va < ghi) {
		s = lookup(va)
		if (s > 0) {
			match($0, /^[\t ]+/)
			printf "%s%x %s+0x%x (%s)\n", substr($0, 1, RLENGTH), va, sname[s], va - saddr[s], guest
			next
		}
	}
	print
	next
}

{ print }

END {
	if (stubs_out != "") {
		for (i = 1; i <= nstub; i++)
			print stubs[i] > stubs_out
		close(stubs_out)
	}
}

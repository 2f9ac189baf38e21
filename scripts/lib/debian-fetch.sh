# SPDX-License-Identifier: GPL-2.0
#
# debian-fetch.sh - fetch Debian's linux-source-7.3 package by name.
#
# Source this file and call:
#
#	asi_debian_fetch DESTDIR
#
# It downloads linux-source-7.3 (trixie-backports, arch all) with
# "apt-get download", using a throw-away private apt configuration inside
# DESTDIR: its own sources list, lists, cache and (empty) dpkg status.
# The host's /etc/apt is neither read nor changed (its apt.conf.d hooks
# do not run); only its proxy setting, if any, is carried over.  Only
# deb.debian.org is contacted and apt's signature and hash checks stay on.
#
# The release is verified with /usr/share/keyrings/debian-archive-keyring.gpg.
# If that keyring is too old to know the trixie keys, a newer
# debian-archive-keyring .deb is fetched from the host's own (verified)
# Debian release and its keyring is used instead.
#
# On success DESTDIR/linux-source-7.3.tar.xz holds the package's payload
# tarball, DESTDIR/.deb-sha256 records the verified .deb hash, and the
# tarball path is printed on stdout.  Progress goes to stderr.  A second
# call with a complete DESTDIR only prints the path.
#
# Safe to source from "set -euo pipefail" scripts: every step is checked
# explicitly and failures are reported with a non-zero return.

ASI_DEB_MIRROR="http://deb.debian.org/debian"
ASI_DEB_SUITE="trixie-backports"
ASI_DEB_PKG="linux-source-7.3"
ASI_DEB_VERSION="7.3.4-1~bpo13+1"
ASI_DEB_SHA256="703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3"
ASI_DEB_MEMBER="./usr/src/linux-source-7.3.tar.xz"
ASI_DEB_KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

_asi_debfetch_log()
{
	printf 'asi: fetch: %s\n' "$*" >&2
}

_asi_debfetch_err()
{
	printf 'asi: fetch: error: %s\n' "$*" >&2
}

# Run apt-get against the private configuration in ROOT.
_asi_debfetch_apt()	# ROOT ARGS...
{
	local root=$1
	shift
	APT_CONFIG="$root/apt.conf" apt-get -q "$@"
}

# Create a private apt tree in ROOT for SUITES... of ASI_DEB_MIRROR, trusting KEYRING.
_asi_debfetch_init()	# ROOT KEYRING SUITES...
{
	local root=$1 keyring=$2 arch proxy= suite
	shift 2

	arch=$(dpkg --print-architecture) || return 1

	# Carry over an http proxy the host apt may be configured with.
	proxy=$(apt-config dump --format '%v%n' Acquire::http::Proxy 2>/dev/null) ||
		proxy=
	proxy=${proxy%%$'\n'*}

	mkdir -p "$root/etc/apt.conf.d" "$root/etc/sources.list.d" \
		 "$root/etc/preferences.d" "$root/etc/trusted.gpg.d" \
		 "$root/state/lists/partial" "$root/cache/archives/partial" \
		 "$root/log" || return 1
	: > "$root/status" || return 1

	# Dir::Etc points at the private tree, so /etc/apt/apt.conf{,.d},
	# sources, preferences and trusted keys of the host are not used.
	{
		printf 'Dir::Etc "%s/etc";\n' "$root"
		printf 'Dir::State "%s/state";\n' "$root"
		printf 'Dir::State::status "%s/status";\n' "$root"
		printf 'Dir::Cache "%s/cache";\n' "$root"
		printf 'Dir::Log "%s/log";\n' "$root"
		printf 'APT::Architecture "%s";\n' "$arch"
		printf 'APT::Architectures { "%s"; };\n' "$arch"
		printf 'Acquire::Languages "none";\n'
		printf 'Acquire::PDiffs "false";\n'
		printf 'Acquire::http::AllowRedirect "false";\n'
		if [ -n "$proxy" ]; then
			printf 'Acquire::http::Proxy "%s";\n' "$proxy"
		fi
		printf 'Binary::apt-get::Acquire::AllowInsecureRepositories "false";\n'
	} > "$root/apt.conf" || return 1

	: > "$root/etc/sources.list" || return 1
	for suite in "$@"; do
		printf 'deb [signed-by=%s] %s %s main\n' \
			"$keyring" "$ASI_DEB_MIRROR" "$suite" \
			>> "$root/etc/sources.list" || return 1
	done
	chmod 0755 "$root" || return 1
}

# "apt-get update" in ROOT; succeed only if every suite's InRelease was
# fetched and verified.  The log is left in ROOT/update.log.
_asi_debfetch_update()	# ROOT SUITES...
{
	local root=$1 suite
	shift

	_asi_debfetch_apt "$root" update > "$root/update.log" 2>&1 || return 1
	for suite in "$@"; do
		compgen -G "$root/state/lists/*_dists_${suite}_InRelease" \
			> /dev/null || return 1
	done
}

_asi_debfetch_show_log()	# FILE
{
	sed 's/^/asi: fetch:   /' "$1" >&2
}

# The host's keyring cannot verify ASI_DEB_SUITE: fetch the newest
# debian-archive-keyring from the host's own Debian release (verified by
# that same host keyring), unpack it in ROOT and print its keyring path.
_asi_debfetch_newer_keyring()	# ROOT
{
	local root=$1 codename= deb

	if [ -r /etc/os-release ]; then
		codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
	fi
	if [ -z "$codename" ]; then
		_asi_debfetch_err "cannot tell this host's Debian release to bootstrap a newer keyring"
		return 1
	fi
	_asi_debfetch_log "fetching newer debian-archive-keyring from $codename{,-updates}"

	_asi_debfetch_init "$root" "$ASI_DEB_KEYRING" \
		"$codename" "$codename-updates" || return 1
	# $codename-updates is a bonus; $codename itself must verify.
	if ! _asi_debfetch_update "$root" "$codename" "$codename-updates" &&
	   ! compgen -G "$root/state/lists/*_dists_${codename}_InRelease" > /dev/null; then
		_asi_debfetch_show_log "$root/update.log"
		_asi_debfetch_err "apt-get update for $codename failed"
		return 1
	fi
	mkdir -p "$root/dl" "$root/x" || return 1
	if ! (cd "$root/dl" &&
	      _asi_debfetch_apt "$root" download debian-archive-keyring) \
	      > "$root/download.log" 2>&1; then
		_asi_debfetch_show_log "$root/download.log"
		_asi_debfetch_err "apt-get download debian-archive-keyring failed"
		return 1
	fi
	deb=$(compgen -G "$root/dl/debian-archive-keyring_*.deb" | head -n1)
	if [ -z "$deb" ] || ! dpkg-deb -x "$deb" "$root/x"; then
		_asi_debfetch_err "cannot unpack debian-archive-keyring"
		return 1
	fi
	_asi_debfetch_log "using keyring from $(basename "$deb")"
	printf '%s\n' "$root/x/usr/share/keyrings/debian-archive-keyring.gpg"
}

# The real work; the caller removes the private directory PRIV.
_asi_debfetch_run()	# DEST PRIV
{
	local dest=$1 priv=$2
	local root=$priv/apt keyring=$ASI_DEB_KEYRING
	local spec ver size deb sum t0 t1 out=$dest/$ASI_DEB_PKG.tar.xz

	if [ ! -r "$keyring" ]; then
		_asi_debfetch_err "$keyring missing (install debian-archive-keyring)"
		return 1
	fi

	_asi_debfetch_log "apt-get update ($ASI_DEB_SUITE, private apt state in $priv)"
	_asi_debfetch_init "$root" "$keyring" "$ASI_DEB_SUITE" || {
		_asi_debfetch_err "cannot set up private apt directory $root"
		return 1
	}
	if ! _asi_debfetch_update "$root" "$ASI_DEB_SUITE"; then
		# Only a key problem is worth a keyring bootstrap; a failed
		# fetch also says "is not signed", so do not match on that.
		if ! grep -qE 'NO_PUBKEY|EXPKEYSIG|KEYEXPIRED|REVKEYSIG|BADSIG|GPG error' \
			"$root/update.log"; then
			_asi_debfetch_show_log "$root/update.log"
			_asi_debfetch_err "apt-get update for $ASI_DEB_SUITE failed"
			return 1
		fi
		_asi_debfetch_log "$keyring cannot verify $ASI_DEB_SUITE"
		keyring=$(_asi_debfetch_newer_keyring "$priv/keyring") || return 1
		rm -rf "$root"
		_asi_debfetch_init "$root" "$keyring" "$ASI_DEB_SUITE" || return 1
		if ! _asi_debfetch_update "$root" "$ASI_DEB_SUITE"; then
			_asi_debfetch_show_log "$root/update.log"
			_asi_debfetch_err "apt-get update for $ASI_DEB_SUITE failed even with the newer keyring"
			return 1
		fi
	fi

	# Prefer the pinned version; fall back to whatever the archive has.
	# apt-cache's output is read whole before it is searched: with
	# pipefail, "apt-cache | grep -q" fails whenever grep stops reading
	# early and apt-cache gets SIGPIPE, which made the pinned version look
	# gone although it was there.
	spec="$ASI_DEB_PKG=$ASI_DEB_VERSION"
	ver=$ASI_DEB_VERSION
	show=$(APT_CONFIG="$root/apt.conf" apt-cache show "$ASI_DEB_PKG" 2>/dev/null) || show=
	if ! grep -qFx "Version: $ver" <<<"$show"; then
		show=$(APT_CONFIG="$root/apt.conf" apt-cache show --no-all-versions \
			"$ASI_DEB_PKG" 2>/dev/null) || show=
		ver=$(sed -n 's/^Version: //p' <<<"$show" | sed -n 1p)
		if [ -z "$ver" ]; then
			_asi_debfetch_err "$ASI_DEB_PKG is not in $ASI_DEB_SUITE"
			return 1
		fi
		_asi_debfetch_log "warning: $spec is gone from the archive, using $ver (no pinned hash to check)"
		spec="$ASI_DEB_PKG=$ver"
	fi
	show=$(APT_CONFIG="$root/apt.conf" apt-cache show "$spec" 2>/dev/null) || show=
	size=$(sed -n 's/^Size: //p' <<<"$show" | sed -n 1p)

	_asi_debfetch_log "downloading $spec (${size:-?} bytes)"
	mkdir -p "$priv/dl" || return 1
	chown _apt "$priv/dl" 2>/dev/null || :
	t0=$(date +%s)
	if ! (cd "$priv/dl" && _asi_debfetch_apt "$root" download "$spec") \
		> "$priv/download.log" 2>&1; then
		_asi_debfetch_show_log "$priv/download.log"
		_asi_debfetch_err "apt-get download $spec failed"
		return 1
	fi
	t1=$(date +%s)
	deb=$(compgen -G "$priv/dl/${ASI_DEB_PKG}_*.deb" | head -n1)
	if [ -z "$deb" ]; then
		_asi_debfetch_err "apt-get download left no .deb in $priv/dl"
		return 1
	fi
	_asi_debfetch_log "downloaded $(basename "$deb") in $((t1 - t0))s"

	sum=$(sha256sum "$deb" | cut -d' ' -f1)
	if [ "$ver" = "$ASI_DEB_VERSION" ]; then
		if [ "$sum" != "$ASI_DEB_SHA256" ]; then
			_asi_debfetch_err "sha256 mismatch for $(basename "$deb"): expected $ASI_DEB_SHA256, got $sum"
			return 1
		fi
		_asi_debfetch_log "sha256 ok ($sum)"
	else
		_asi_debfetch_log "sha256 $sum (verified by apt only)"
	fi

	_asi_debfetch_log "extracting ${ASI_DEB_MEMBER#./} to $out"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xOf - "$ASI_DEB_MEMBER" > "$out.tmp"
	if [ "${PIPESTATUS[0]}${PIPESTATUS[1]}" != 00 ] || [ ! -s "$out.tmp" ]; then
		rm -f "$out.tmp"
		_asi_debfetch_err "cannot extract ${ASI_DEB_MEMBER#./} from $(basename "$deb")"
		return 1
	fi
	mv -f "$out.tmp" "$out" || return 1
	printf '%s  %s\n' "$sum" "$(basename "$deb")" > "$dest/.deb-sha256.tmp" &&
		mv -f "$dest/.deb-sha256.tmp" "$dest/.deb-sha256" || return 1
	printf '%s\n' "$out"
}

asi_debian_fetch()	# DESTDIR
{
	local dest=${1:-} out priv rc=0 tool

	if [ -z "$dest" ]; then
		_asi_debfetch_err "usage: asi_debian_fetch DESTDIR"
		return 1
	fi
	mkdir -p "$dest" && dest=$(cd "$dest" && pwd -P) || {
		_asi_debfetch_err "cannot create $1"
		return 1
	}
	out=$dest/$ASI_DEB_PKG.tar.xz

	# Idempotent: a tarball with a recorded, verified .deb hash is done.
	if [ -s "$out" ] && [ -r "$dest/.deb-sha256" ] &&
	   grep -qE '^[0-9a-f]{64}  ' "$dest/.deb-sha256"; then
		_asi_debfetch_log "already have $out"
		printf '%s\n' "$out"
		return 0
	fi

	for tool in apt-get apt-cache apt-config dpkg dpkg-deb tar sha256sum; do
		if ! command -v "$tool" > /dev/null; then
			_asi_debfetch_err "$tool not found (Debian-based host needed)"
			return 1
		fi
	done
	# apt's one-line sources and config syntax cannot quote these.
	case $dest in
	*[[:space:]\"\;\[\]]*)
		_asi_debfetch_err "DESTDIR must not contain whitespace, quotes, ';' or brackets: $dest"
		return 1
		;;
	esac
	rm -f "$dest/.deb-sha256"

	priv=$(mktemp -d "$dest/.apt-private.XXXXXX") || {
		_asi_debfetch_err "cannot create a private directory in $dest"
		return 1
	}
	# Let apt's unprivileged _apt download user reach the private tree.
	chmod 0755 "$priv"
	_asi_debfetch_run "$dest" "$priv" || rc=$?
	rm -rf "$priv"
	return "$rc"
}

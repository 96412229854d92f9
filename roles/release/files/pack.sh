#!/usr/bin/env bash
# Pack one release on the controller, reproducibly, and print {"id", "tarball"} as JSON.
#   pack.sh KIND SOURCE VERSION CACHE_DIR APP ID_OVERRIDE [EXCLUDE...]
# KIND: dir (a project directory), archive (.tar, .tar.gz, .tgz, .zip), git (a repository URL).
# The release id: dir -> sha256 of the packed tarball; archive -> sha256 of the archive;
# git -> the commit. The same source gives the same id and the same bytes on every run.
set -euo pipefail
kind=$1 source=$2 version=$3 cache=$4 app=$5 id_override=$6
shift 6
mkdir -p "$cache"
work=$(mktemp -d "$cache/.pack.XXXXXX")
trap 'rm -rf "$work"' EXIT
excludes=()
for pattern in "$@"; do excludes+=("--exclude=$pattern"); done

case $kind in
  dir)
    src=$source
    ;;
  archive)
    mkdir "$work/x"
    case $source in
      *.zip) python3 -m zipfile -e "$source" "$work/x" ;;
      *) tar -xf "$source" -C "$work/x" ;;
    esac
    # An archive of one directory holding the project: pack that directory.
    shopt -s nullglob dotglob
    entries=("$work/x"/*)
    if [ "${#entries[@]}" -eq 1 ] && [ -d "${entries[0]}" ] && [ ! -e "$work/x/manage.py" ]; then
      src=${entries[0]}
    else
      src=$work/x
    fi
    id=$(sha256sum "$source" | cut -c1-12)
    ;;
  git)
    mirror=$cache/git/$(printf '%s' "$source" | sha1sum | cut -c1-40)
    if [ -d "$mirror" ]; then
      git -C "$mirror" remote update --prune >/dev/null 2>&1
    else
      mkdir -p "$cache/git"
      git clone --quiet --mirror "$source" "$mirror"
    fi
    commit=$(git -C "$mirror" rev-parse --verify --quiet "$version^{commit}") \
      || { echo "git version '$version' not found in $source" >&2; exit 4; }
    mkdir "$work/x"
    git -C "$mirror" archive "$commit" | tar -x -C "$work/x"
    src=$work/x
    id=${commit:0:12}
    ;;
  *)
    echo "unknown source kind $kind" >&2
    exit 2
    ;;
esac

if [ ! -f "$src/manage.py" ]; then
  echo "no manage.py at the top of $source: point the source at the Django project's directory" >&2
  exit 3
fi
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' \
  "${excludes[@]}" -C "$src" -cf - . | gzip -n >"$work/release.tar.gz"
if [ "$kind" = dir ]; then
  id=$(sha256sum "$work/release.tar.gz" | cut -c1-12)
fi
if [ -n "$id_override" ]; then
  id=$id_override
fi
mv "$work/release.tar.gz" "$cache/$app-$id.tar.gz"
printf '{"id": "%s", "tarball": "%s"}\n' "$id" "$cache/$app-$id.tar.gz"

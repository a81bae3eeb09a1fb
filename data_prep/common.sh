# Shared by data_prep/prepare_*.sh (sourced, not run): option parsing, download, the python step.
# Each wrapper sets CORPUS, LAYOUT, and defines usage() and download_raw DIR before calling main "$@".

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}

die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }

# fetch URL FILE: download once (a partial download never counts as done).
fetch() {
  local url=$1 file=$2
  if [ -s "$file" ]; then echo "have $file"; return 0; fi
  echo "downloading $url"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$file.part" "$url" || die "download failed: $url (give --raw-dir to work offline)"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$file.part" "$url" || die "download failed: $url (give --raw-dir to work offline)"
  else
    die "neither curl nor wget found; download $url yourself and give --raw-dir"
  fi
  mv "$file.part" "$file"
}

# unpack ARCHIVE DIR MARKER: extract once (MARKER = a path the archive creates under DIR).
unpack() {
  local archive=$1 dir=$2 marker=$3
  [ -e "$dir/$marker" ] && return 0
  echo "unpacking $archive"
  tar -xzf "$archive" -C "$dir" || die "cannot unpack $archive (delete it to download again)"
}

main() {
  local out="" raw_dir="" extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --out) out=${2:-}; shift 2 ;;
      --out=*) out=${1#*=}; shift ;;
      --raw-dir) raw_dir=${2:-}; shift 2 ;;
      --raw-dir=*) raw_dir=${1#*=}; shift ;;
      --vocab-size|--src|--tgt|--max-lines|--workers|--train-max-words|--train-max-ratio|--spm-sentences|--split)
        [ $# -ge 2 ] || die "$1 needs a value"; extra+=("$1" "$2"); shift 2 ;;
      --lowercase|--force) extra+=("$1"); shift ;;
      --*=*) extra+=("$1"); shift ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  [ -n "$out" ] || die "--out DIR is required (see --help)"
  if [ -z "$raw_dir" ]; then
    raw_dir="$out/raw"
    mkdir -p "$raw_dir"
    download_raw "$raw_dir"
  fi
  [ -d "$raw_dir" ] || die "raw directory not found: $raw_dir"
  PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m lskd_plugins.nmt.prepare --layout "$LAYOUT" --raw-dir "$raw_dir" --out "$out" "${extra[@]}"
}

# The options every wrapper shares (printed by usage()).
COMMON_OPTIONS="Options:
  --out DIR            output directory: DIR/text, DIR/spm, DIR/data-bin, DIR/prepare.json (required)
  --raw-dir DIR        read the raw files from DIR (offline); without it they are downloaded to DIR/raw
  --vocab-size N       joint sentencepiece vocabulary size
  --src L --tgt L      translation direction (language suffixes of the raw files)
  --max-lines N        keep the first N pairs of each split (smoke runs)
  --workers N          processes for sentencepiece and fairseq-preprocess (default 1)
  --lowercase          lowercase all text
  --train-max-words N, --train-max-ratio R   training-pair filter (as Moses clean-corpus-n)
  --split NAME=PREFIX  plain files PREFIX.{src,tgt}[.gz] in the raw dir for train|valid|test
  --force              redo a preparation made with other settings
  -h, --help           this help

Idempotent: a second run with the same settings does nothing; downloads are kept.
Environment: PYTHON (default: python) must import lskd_plugins and fairseq (the project's venv)."

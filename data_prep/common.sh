# Shared by data_prep/prepare_*.sh (sourced, not run): option parsing, download, then
# `lskd prepare-mt` (lskd_plugins/nmt/prepare.py) does the work.
# Each wrapper sets CORPUS, LAYOUT, and defines usage() and download_raw DIR before calling main "$@".

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}

# One line in the project's format (as `lskd` prints it), exit 2: a usage or input error.
die() { echo "lskd: error: $(basename "$0"): $*" >&2; exit 2; }
# The same line, exit 1: a failure of the work (a damaged archive).
fail() { echo "lskd: error: $(basename "$0"): $*" >&2; exit 1; }

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

# fetch_optional URL FILE: as fetch, but a file the server does not have is skipped with a note
# (Multi30k has no test_2017_mscoco for every language).
fetch_optional() {
  local url=$1 file=$2
  if [ -s "$file" ]; then echo "have $file"; return 0; fi
  echo "downloading $url"
  if command -v curl >/dev/null 2>&1; then
    curl -fsL --retry 3 -o "$file.part" "$url" || { rm -f "$file.part"; echo "not available, skipped: $url"; return 0; }
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$file.part" "$url" || { rm -f "$file.part"; echo "not available, skipped: $url"; return 0; }
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
  local errors last why
  errors=$(mktemp)
  if ! tar -xzf "$archive" -C "$dir" 2>"$errors"; then
    # The last member whose header can still be read is the one the damage cuts into.
    last=$(tar -tzf "$archive" 2>/dev/null | tail -n 1)
    why=$(grep -v -e '^$' -e 'not recoverable' "$errors" | head -n 1)
    rm -f "$errors" "$dir/$marker"
    fail "$archive is damaged: cannot read member ${last:-at its start} (${why:-tar failed});" \
      "delete it to download again"
  fi
  rm -f "$errors"
}

# check_number OPTION VALUE: the numeric options, range-checked before any download (the same
# ranges as `lskd prepare-mt`, which checks them again).
check_number() {
  case "$1" in
    --vocab-size|--max-lines|--train-max-words)
      [[ "$2" =~ ^[0-9]+$ ]] || die "$1: expected an integer >= 0, got '$2'" ;;
    --workers|--spm-sentences)
      [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "$1: expected an integer > 0, got '$2'" ;;
    --train-max-ratio)
      [[ "$2" =~ ^[0-9]+([.][0-9]*)?$ ]] || die "$1: expected a finite number >= 0, got '$2'" ;;
  esac
}

main() {
  local out="" raw_dir="" extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --output|--out|--raw-dir) [ $# -ge 2 ] || die "$1 needs a value (see --help)" ;;&
      --output|--out) out=${2:-}; shift 2 ;;
      --output=*|--out=*) out=${1#*=}; shift ;;
      --raw-dir) raw_dir=${2:-}; shift 2 ;;
      --raw-dir=*) raw_dir=${1#*=}; shift ;;
      --vocab-size|--src|--tgt|--max-lines|--workers|--train-max-words|--train-max-ratio|--spm-sentences|--split)
        [ $# -ge 2 ] || die "$1 needs a value"; check_number "$1" "$2"; extra+=("$1" "$2"); shift 2 ;;
      --lowercase|--overwrite|--no-progress) extra+=("$1"); shift ;;
      --force) extra+=(--overwrite); shift ;;
      --quiet) extra+=(--no-progress); shift ;;
      --*=*) extra+=("$1"); shift ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  [ -n "$out" ] || die "--output DIR is required (see --help)"
  [ ! -e "$out" ] || [ -d "$out" ] || die "--output $out is a file, not a folder; give a folder path"
  if [ -z "$raw_dir" ]; then
    raw_dir="$out/raw"
    mkdir -p "$raw_dir"
    download_raw "$raw_dir"
  fi
  [ -d "$raw_dir" ] || die "raw directory not found: $raw_dir"
  PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m lskd_plugins.cli prepare-mt --layout "$LAYOUT" --raw-dir "$raw_dir" --output "$out" "${extra[@]}"
}

# The options every wrapper shares (printed by usage()).
COMMON_OPTIONS="Options:
  --output DIR         output folder: DIR/text, DIR/spm, DIR/data-bin, DIR/prepare.json (required;
                       --out still works)
  --raw-dir DIR        read the raw files from DIR (offline); without it they are downloaded to DIR/raw
  --vocab-size N       joint sentencepiece vocabulary size
  --src L --tgt L      translation direction (language suffixes of the raw files)
  --max-lines N        keep the first N pairs of each split (smoke runs)
  --workers N          processes for sentencepiece and fairseq-preprocess (default 1)
  --lowercase          lowercase all text
  --train-max-words N, --train-max-ratio R   training-pair filter (as Moses clean-corpus-n)
  --split NAME=PREFIX  plain files PREFIX.{src,tgt}[.gz] in the raw dir for train|valid|test
  --overwrite          redo a preparation made with other settings or by an earlier lskd
                       (--force still works)
  --no-progress        no progress lines
  -h, --help           this help

Idempotent: a second run with the same settings does nothing; downloads are kept; a killed run's
half-done work (DIR/.partial) is removed by the next run, which starts clean.
Environment: PYTHON (default: python) must import lskd_plugins and fairseq (the project's venv)."

#!/bin/sh
# docs/laminafs.1 renders without a groff warning and names every option
# `laminafs --help` lists, so the two cannot drift apart.
#   check_man_page.sh LAMINAFS_BINARY MAN_PAGE
set -eu
laminafs=$1
page=$2

warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
if [ -n "$warnings" ]; then
  echo "groff warnings in $page:"
  echo "$warnings"
  exit 1
fi
text=$(groff -man -Tutf8 -rLL=400n "$page" 2>/dev/null | col -bx)

# Option lines of --help start with two spaces; the option column ends at
# the first run of two spaces. "[no]x" stands for x and nox, "x=..." for x.
options=$("$laminafs" --help | awk '
  /^  [^ ]/ {
    left = substr($0, 3)
    gap = index(left, "  ")
    if (gap > 0) left = substr(left, 1, gap - 1)
    n = split(left, tokens, /,? +|,$/)
    for (i = 1; i <= n; i++) {
      t = tokens[i]
      sub(/=.*/, "", t)
      if (t ~ /^\[no\]/) { t = substr(t, 5); print "no" t }
      if (t ~ /^-?-?[a-z][a-z0-9_]*$/) print t
    }
  }' | sort -u)
if [ -z "$options" ]; then
  echo "no options found in laminafs --help"
  exit 1
fi

missing=""
count=0
for option in $options; do
  count=$((count + 1))
  printf '%s\n' "$text" | grep -qwF -- "$option" || missing="$missing $option"
done
if [ -n "$missing" ]; then
  echo "options in laminafs --help but not in $page:$missing"
  exit 1
fi
echo "$page: renders cleanly and documents all $count options of laminafs --help"

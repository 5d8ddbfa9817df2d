# The shell tests' form of UntouchedLayers (untouched_layers.h): a lower
# layer's digest is recorded before its first mount and compared after its
# last, once the daemons have ended. Sourced; the digests are taken by
# lamina-layer-digest, $LAMINA_LAYER_DIGEST or else the one built beside
# $laminafs.
#   lower_record DIR FILE      writes the digest of DIR to FILE
#   lower_untouched DIR FILE   returns 1, printing the first differences
#                              (object: field value, before "<" and after ">"),
#                              unless DIR still has the digest in FILE

layer_digest=${LAMINA_LAYER_DIGEST:-$(dirname "$laminafs")/../integration/lamina-layer-digest}

lower_record() {
  [[ -x "$layer_digest" ]] || { echo "lamina-layer-digest is not built ($layer_digest)" >&2; return 1; }
  "$layer_digest" "$1" > "$2"
}

lower_untouched() {
  "$layer_digest" "$1" > "$2.after" || return 1
  if ! cmp -s "$2" "$2.after"; then
    echo "lower layer $1 changed: $(diff "$2" "$2.after" | grep -c '^>') fields differ; the first:" >&2
    diff "$2" "$2.after" | grep '^[<>]' | head -40 >&2
    return 1
  fi
}

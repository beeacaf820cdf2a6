/**
 * The sh recipes that rebuild a packed backup's media without this tool, from an export (`export
 * --raw`'s README) or from links (`url`). Both run the same steps on the same layout,
 * `$R/$ENV/$ID/{manifest.json,media.rebuild.sh.age}` and `$R/$ENV/packs/`:
 *
 * 1. every pack's SHA-256 must be recorded in a manifest (or in a signed forward, for the copy of a
 *    repacked pack), and every pack must hold nothing but files named by a SHA-256, checked for all
 *    packs before any is extracted: a planted pack cannot make tar write outside the folder;
 * 2. each pack is extracted into a folder of its own, under a temporary folder (blobs are plaintext);
 * 3. the backup's rebuild script, decompressed, puts the media together (verify checks that it is the
 *    one its index derives).
 */
const CORE = [
  'B=$(mktemp -d)',
  // The blobs are plaintext: gone however the script ends, a refused pack included.
  `trap 'rm -rf -- "$B" "\${TMPR:-$B}"' EXIT`,
  'for pack in "$R/$ENV"/packs/*.age; do',
  '  sum=$(sha256sum < "$pack" | cut -c1-64)',
  String.raw`  grep -qs "\"sha256\": *\"$sum\"" "$R/$ENV"/*/manifest.json "$R/$ENV"/packs/*.json ||`,
  '    { echo "$pack is not recorded in any manifest: stopping" >&2; exit 1; }',
  '  tar=$B/$(basename "$pack" .age).tar',
  '  age -d -i "$KEY" -o "$B/pack" "$pack"',
  // A compressed pack is a zstd frame; -f passes an uncompressed tar through as it is.
  '  zstd -dcqf "$B/pack" > "$tar" && rm "$B/pack"',
  `  if tar -tvf "$tar" | grep -v '^-' >&2 || tar -tf "$tar" | grep -qvE '^[0-9a-f]{64}$'; then`,
  '    echo "$pack holds something other than blobs: stopping" >&2; exit 1',
  '  fi',
  'done',
  'for tar in "$B"/*.tar; do',
  '  dir=$(dirname "$tar")/$(basename "$tar" .tar)',
  '  mkdir "$dir" && tar -xf "$tar" -C "$dir" && rm "$tar"',
  'done',
  // Compressed in backups since this tool compressed it; -f passes an older, plain script through.
  'age -d -i "$KEY" -o "$B/rebuild.sh.zst" "$R/$ENV/$ID/media.rebuild.sh.age"',
  'zstd -dcqf "$B/rebuild.sh.zst" > "$B/rebuild.sh"',
  'sh "$B/rebuild.sh" "$B" "$OUT"',
]

/** For the raw export's README: run in the export's folder, first line set by the user. */
export function exportRecipe(): string[] {
  return [
    "KEY=backup-identity.txt ID='<backup id>' ENV='<environment>' OUT=media",
    'set -eu',
    'R=.',
    'sha256sum -c --quiet SHA256SUMS',
    ...CORE,
  ]
}

/** For `url`: fetches what the backup's media needs into a temporary folder, then rebuilds it. */
export function linkRecipe(options: {environment: string; id: string; links: {path: string; url: string}[]}): string[] {
  return [
    'KEY=backup-identity.txt OUT=media',
    'set -eu',
    `R=$(mktemp -d) ID='${options.id}' ENV='${options.environment}'`,
    'TMPR=$R',
    'mkdir -p "$R/$ENV/$ID" "$R/$ENV/packs"',
    ...options.links.map(({path, url}) => `curl -fsS -o "$R/$ENV/${path}" '${url}'`),
    ...CORE,
  ]
}

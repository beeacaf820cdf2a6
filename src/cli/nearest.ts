/** The known name closest to `typo` (edit distance at most a third of its length, and at least 1), if any. */
export function nearestName(typo: string, known: readonly string[]): string | undefined {
  let best: undefined | {distance: number; name: string}
  for (const name of known) {
    const distance = editDistance(typo, name)
    if (distance <= Math.max(1, Math.floor(name.length / 3)) && (best === undefined || distance < best.distance))
      best = {distance, name}
  }

  return best?.name
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    previous = current
  }

  return previous[b.length]
}

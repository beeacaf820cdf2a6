/** A word for sh: in single quotes, which keep everything literal but a single quote. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", String.raw`'\''`)}'`
}

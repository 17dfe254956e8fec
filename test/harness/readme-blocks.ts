/**
 * The shell blocks of a README that a test runs as written. A block is marked by
 * an HTML comment on the line before its opening fence:
 *
 *   <!-- walkthrough: run -->            run it once; it must succeed
 *   <!-- walkthrough: until /REGEX/ -->  run it again until its output matches (a check
 *                                        the reader repeats until it shows what the text says)
 */

export interface ReadmeBlock {
  readonly kind: "run" | "until";
  /** For `until`: what the output must show (matched per line). */
  readonly expect: RegExp | null;
  readonly script: string;
  /** 1-based line of the marker, for messages. */
  readonly line: number;
}

const MARKER = /^<!--\s*(\w+):\s*(run|until\s+\/(.*)\/)\s*-->\s*$/;

export function readmeBlocks(text: string, tag: string): ReadmeBlock[] {
  const lines = text.split("\n");
  const out: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!);
    if (!m || m[1] !== tag) continue;
    const open = lines[i + 1] ?? "";
    if (!/^```(sh|bash)\s*$/.test(open)) {
      throw new Error(
        `line ${i + 1}: a ${tag} marker must be followed by a \`\`\`sh block, found ${JSON.stringify(open)}`,
      );
    }
    const body: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j] !== "```"; j++) body.push(lines[j]!);
    if (j >= lines.length) throw new Error(`line ${i + 1}: the block is not closed`);
    const until = m[2]!.startsWith("until");
    out.push({
      kind: until ? "until" : "run",
      expect: until ? new RegExp(m[3]!, "m") : null,
      script: body.join("\n"),
      line: i + 1,
    });
    i = j;
  }
  return out;
}

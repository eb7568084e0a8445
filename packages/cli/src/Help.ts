/**
 * `quarry --help` and `quarry <command> --help`: @effect/cli's help without its filler. Its help pads every
 * option with a generic line per type ("A user-defined piece of text.", "This setting is optional."); ours says
 * each option's type (in its value name), default and meaning once, and lists the commands one line each.
 *
 * @since 0.1.0
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import type * as Span from "@effect/cli/HelpDoc/Span"
import * as Usage from "@effect/cli/Usage"
import * as Arr from "effect/Array"
import * as Option from "effect/Option"

/**
 * A command `quarry --help` lists.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly name: string
  readonly summary: string
  readonly help: () => string
}

const text = (span: Span.Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Sequence":
      return text(span.left) + text(span.right)
    default:
      return text(span.value)
  }
}

/** @effect/cli's generic paragraphs: each only restates the value name or says nothing. */
const filler = new Set([
  "A user-defined piece of text.",
  "A true or false value.",
  "An integer.",
  "A floating point number.",
  "A file.",
  "An existing file.",
  "A file or directory.",
  "This setting is optional.",
  "This option can be set from environment variables."
])

/** Drops the filler paragraphs of an option's block. */
const clean = (doc: HelpDoc.HelpDoc): HelpDoc.HelpDoc => {
  switch (doc._tag) {
    case "Paragraph": {
      const value = text(doc.value)
      return filler.has(value) || value.startsWith("One of the following: ") ? HelpDoc.empty : doc
    }
    case "Sequence":
      return HelpDoc.sequence(clean(doc.left), clean(doc.right))
    case "DescriptionList":
      return HelpDoc.descriptionList(Arr.map(doc.definitions, ([span, block]) => [span, clean(block)] as const))
    case "Enumeration":
      return HelpDoc.enumeration(Arr.map(doc.elements, clean))
    default:
      return doc
  }
}

/**
 * A help document as plain text (no ANSI styles).
 *
 * @since 0.1.0
 * @category rendering
 */
export const plain = (doc: HelpDoc.HelpDoc): string => HelpDoc.toAnsiText(doc).replace(/\u001b\[[0-9;]*m/g, "")

const config = CliConfig.make({ showBuiltIns: false })

/** The first paragraph of a command's help: its description. */
const firstParagraph = (doc: HelpDoc.HelpDoc): Option.Option<string> => {
  switch (doc._tag) {
    case "Paragraph":
      return Option.some(text(doc.value))
    case "Sequence":
      return Option.orElse(firstParagraph(doc.left), () => firstParagraph(doc.right))
    default:
      return Option.none()
  }
}

/**
 * A command for the help: its name, its description (one line) as summary, and its own help (usage, description,
 * arguments, options).
 *
 * @since 0.1.0
 * @category constructors
 */
export const entry = <Name extends string, R, E, A>(self: Command.Command<Name, R, E, A>): Entry => {
  const help = Command.getHelp(self, config)
  return {
    name: Arr.fromIterable(Command.getNames(self))[0] ?? "",
    summary: Option.getOrElse(firstParagraph(help), () => ""),
    help: () =>
      plain(HelpDoc.blocks([
        HelpDoc.h1("USAGE"),
        HelpDoc.p(`$ quarry ${text(HelpDoc.getSpan(Usage.getHelp(Command.getUsage(self))))}`),
        clean(help)
      ]))
  }
}

/**
 * The help of `quarry` itself: the commands, one line each, and the global options.
 *
 * @since 0.1.0
 * @category rendering
 */
export const root = (version: string, summary: string, entries: ReadonlyArray<Entry>): string => {
  const width = Math.max(...entries.map((entry) => entry.name.length))
  return [
    `quarry ${version}: ${summary}`,
    "",
    "Usage: quarry <command> [options]",
    "",
    "Commands:",
    ...entries.map((entry) => `  ${entry.name.padEnd(width)}  ${entry.summary}`),
    "",
    "Options:",
    "  -h, --help           This help; `quarry <command> --help` for a command's.",
    "  --version            The version.",
    "  --completions SHELL  A completion script for sh, bash, fish or zsh.",
    "  --log-level LEVEL    Log at LEVEL and above on stderr (default warning).",
    ""
  ].join("\n")
}

/**
 * The help `args` (the arguments after the program) ask for, if they ask for help: none (`quarry` alone),
 * `--help`/`-h` alone, or after a command's name.
 *
 * @since 0.1.0
 * @category rendering
 */
export const requested = (
  args: ReadonlyArray<string>,
  version: string,
  summary: string,
  entries: () => ReadonlyArray<Entry>
): Option.Option<string> => {
  const [first] = args
  if (first === undefined || first === "--help" || first === "-h") return Option.some(root(version, summary, entries()))
  if (!args.some((arg) => arg === "--help" || arg === "-h")) return Option.none()
  return Option.map(Arr.findFirst(entries(), (entry) => entry.name === first), (entry) => entry.help())
}

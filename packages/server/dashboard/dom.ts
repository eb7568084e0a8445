/**
 * A few lines instead of a framework: element construction and the formatting of numbers, costs and times.
 */

type Child = Node | string | number | null | undefined | false

/** The listeners `h` gave each element, in order: `morph` keeps an element only when its new one has the same. */
const listenersOf = new WeakMap<Element, ReadonlyArray<unknown>>()

/** Attributes: `on*` functions become listeners, the rest attributes (`false`/`null` leave them out). */
type Attributes = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>

/** Makes an element with attributes and children. */
export const h = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: ReadonlyArray<Child | ReadonlyArray<Child>>
): HTMLElementTagNameMap[K] => {
  const element = document.createElement(tag)
  const listeners: Array<unknown> = []
  listenersOf.set(element, listeners)
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === "function") {
      element.addEventListener(name.slice(2), value)
      listeners.push(value)
    } else if (value === true) element.setAttribute(name, "")
    else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, String(value))
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    element.append(typeof child === "number" ? String(child) : child)
  }
  return element
}

/** Replaces the children of `parent`. */
export const mount = (parent: Element, ...children: ReadonlyArray<Node>) => parent.replaceChildren(...children)

/**
 * Makes the children of `parent` look like `children` while keeping the elements they have in common: an element
 * replaced between a press and its release takes no click, and a run's events re-render many times a second.
 * Elements of the same tag, the same listeners and the same `data-key` are updated in place (so a listener that
 * should survive reads the element it is on rather than closing over what it showed); the others are replaced. A
 * part whose listeners close over its own elements takes a new `data-key` each time it is built.
 */
export const morph = (parent: Element, ...children: ReadonlyArray<Node>) =>
  parent.childNodes.length === children.length ?
    [...parent.childNodes].forEach((node, i) => patch(node, children[i]!)) :
    mount(parent, ...children)

const patch = (target: Node, fresh: Node): void => {
  // A node kept between renders (a cached part) is already what it should be.
  if (target === fresh) return
  if (target instanceof Text && fresh instanceof Text) {
    if (target.data !== fresh.data) target.data = fresh.data
  } else if (target instanceof HTMLElement && fresh instanceof HTMLElement && sameKind(target, fresh)) {
    copyAttributes(target, fresh)
    morph(target, ...fresh.childNodes)
  } else {
    target.parentNode?.replaceChild(fresh, target)
  }
}

const sameKind = (target: HTMLElement, fresh: HTMLElement) => {
  const [before, after] = [listenersOf.get(target) ?? [], listenersOf.get(fresh) ?? []]
  return target.tagName === fresh.tagName && target.dataset["key"] === fresh.dataset["key"] &&
    before.length === after.length && before.every((l, i) => l === after[i])
}

const copyAttributes = (target: HTMLElement, fresh: HTMLElement) => {
  for (const name of target.getAttributeNames()) if (!fresh.hasAttribute(name)) target.removeAttribute(name)
  for (const name of fresh.getAttributeNames()) {
    // Through the CSSOM: the Content-Security-Policy refuses style attributes set as attributes.
    if (name === "style") target.style.cssText = fresh.style.cssText
    else if (target.getAttribute(name) !== fresh.getAttribute(name)) {
      target.setAttribute(name, fresh.getAttribute(name)!)
    }
  }
}

/** `1234567` as `1,234,567`. */
export const count = (n: number) => n.toLocaleString("en-US")

/** A cost in dollars with the precision small LLM bills need. */
export const dollars = (usd: number) => usd === 0 ? "$0" : usd < 0.01 ? `$${usd.toFixed(5)}` : `$${usd.toFixed(2)}`

/** A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`. */
export const duration = (ms: number | null) =>
  ms === null ?
    "-" :
    ms < 1000 ?
    `${ms} ms` :
    ms < 60_000 ?
    `${(ms / 1000).toFixed(1)} s` :
    `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`

/** An ISO time as local `HH:MM:SS` (with the date when not today). */
export const time = (iso: string | null) => {
  if (iso === null) return "-"
  const date = new Date(iso)
  const today = new Date().toDateString() === date.toDateString()
  return today ? date.toLocaleTimeString("en-GB") : date.toLocaleString("en-GB")
}

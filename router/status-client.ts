/**
 * The status page's script, run by the browser (served as assets/status-client.js,
 * beside assets/status-view.js, from the admin port's own origin; the page's
 * Content-Security-Policy allows no other). Every second it fetches status.json
 * and renders it with the same statusTree() the server rendered the page with,
 * building elements with createElement and text with text nodes: nothing is
 * ever parsed as HTML. Without JavaScript the server-rendered page refreshes
 * itself (a <noscript> refresh).
 *
 * Node's types have no DOM: the few calls used are declared here.
 */
import { statusTree, type Node as ViewNode } from "./status-view.js";

interface DomNode {
  appendChild(n: DomNode): DomNode;
}
interface DomElement extends DomNode {
  setAttribute(name: string, value: string): void;
  replaceChildren(...nodes: DomNode[]): void;
  textContent: string | null;
}
interface DomDocument {
  createElement(tag: string): DomElement;
  createTextNode(text: string): DomNode;
  getElementById(id: string): DomElement | null;
  title: string;
}

const doc = (globalThis as unknown as { document: DomDocument }).document;
const POLL_MS = 1000;

function build(n: ViewNode): DomNode {
  if (typeof n === "string") return doc.createTextNode(n);
  const el = doc.createElement(n.t);
  for (const [k, v] of Object.entries(n.a ?? {})) el.setAttribute(k, v);
  for (const c of n.c ?? []) el.appendChild(build(c));
  return el;
}

async function poll(): Promise<void> {
  const main = doc.getElementById("status");
  const live = doc.getElementById("live");
  try {
    const res = await fetch("status.json", { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const view: unknown = await res.json();
    main?.replaceChildren(build(statusTree(view)));
    if (live) {
      live.textContent = "live";
      live.setAttribute("class", "state ok");
    }
  } catch (err) {
    if (live) {
      live.textContent = `not updating: ${(err as Error).message}`;
      live.setAttribute("class", "state bad");
    }
  } finally {
    setTimeout(() => void poll(), POLL_MS);
  }
}

void poll();

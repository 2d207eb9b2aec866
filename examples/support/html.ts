/** Escape text for HTML element content and quoted attribute values: what any page writes must pass through it. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Tabs as the ARIA authoring practices describe them: one tab stop for the list, arrow keys
// (and Home/End) move between tabs, the chosen tab's panel is the only one shown.

/** Wire a [role=tablist]; returns select(id) for code that sends the user to a panel. */
export function mountTabs(list, { onSelect = null } = {}) {
  const tabs = [...list.querySelectorAll("[role=tab]")];
  const select = (tab, focus = false) => {
    for (const other of tabs) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", chosen ? "true" : "false");
      other.tabIndex = chosen ? 0 : -1;
      const panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !chosen;
    }
    if (focus) tab.focus();
    if (onSelect) onSelect(tab.id);
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const at = tabs.indexOf(tab);
      const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
  return (id) => {
    const tab = tabs.find((x) => x.id === id);
    if (tab) select(tab);
  };
}

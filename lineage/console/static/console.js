// Draws the lineage graph (Graphviz DOT in #graph-dot) as SVG with viz.js, and makes tables sortable
// with tablesort. Layout and drawing are the libraries'; this only wires them to the page.
document.addEventListener("DOMContentLoaded", () => {
  const source = document.getElementById("graph-dot");
  const holder = document.getElementById("graph");
  if (source && holder) {
    Viz.instance()
      .then((viz) => {
        holder.replaceChildren(viz.renderSVGElement(source.textContent));
        holder.dataset.drawn = "true";
      })
      .catch((error) => { holder.textContent = "The graph could not be drawn: " + error; });
  }
  for (const table of document.querySelectorAll("table.sort")) new Tablesort(table);
});

(function () {
  "use strict";
  function number(text) {
    var m = text.trim().match(/^[+-]?\d+(\.\d+)?/);
    return m ? parseFloat(m[0]) : null;
  }
  function compare(x, y) {
    var a = number(x), b = number(y);
    if (a !== null && b !== null) return a - b;
    if (a !== null) return -1;
    if (b !== null) return 1;
    return x.localeCompare(y);
  }
  function sortBy(table, col, ascending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var c = compare(r.cells[col].textContent, s.cells[col].textContent);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === col) th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }
  function filter(query) {
    var q = query.toLowerCase();
    document.querySelectorAll("table.sortable tbody tr").forEach(function (row) {
      row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  tables.forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      function toggle() { sortBy(table, col, th.getAttribute("aria-sort") !== "ascending"); }
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") toggle(); });
    });
  });
  var box = document.getElementById("filter");
  if (box) box.addEventListener("input", function () { filter(box.value); });
  // Shareable views: #sort=HEADER&filter=TEXT sorts every table that has the column HEADER.
  var params = new URLSearchParams(location.hash.slice(1));
  var by = params.get("sort");
  if (by) {
    tables.forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        if (th.textContent === by) sortBy(table, col, params.get("order") !== "descending");
      });
    });
  }
  if (params.get("filter")) {
    if (box) box.value = params.get("filter");
    filter(params.get("filter"));
  }
})();

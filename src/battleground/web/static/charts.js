// Draws every chart of the page from its JSON spec (div.bg-chart[data-figure]), so that neither the
// dashboard nor a saved report needs an inline script: the Content-Security-Policy forbids them.
(function () {
  "use strict";
  function draw() {
    if (typeof Plotly === "undefined") {
      return;
    }
    var charts = document.querySelectorAll("div.bg-chart[data-figure]");
    for (var i = 0; i < charts.length; i++) {
      var el = charts[i];
      if (el.getAttribute("data-drawn")) {
        continue;
      }
      el.setAttribute("data-drawn", "1");
      var figure = JSON.parse(el.getAttribute("data-figure"));
      var config = JSON.parse(el.getAttribute("data-config") || "{}");
      Plotly.newPlot(el, figure.data || [], figure.layout || {}, config);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();

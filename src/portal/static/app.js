// Progressive enhancement only: every page works without this file.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["x-csrftoken"] = meta.getAttribute("content"); }
});

document.addEventListener("click", function (event) {
  var target = event.target;
  if (target && target.classList && target.classList.contains("print-button")) { window.print(); }
});

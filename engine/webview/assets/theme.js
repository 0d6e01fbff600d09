// Applies the theme chosen with the toggle before the page paints; without
// a choice the page follows prefers-color-scheme.
try {
  var t = localStorage.getItem('happen-theme');
  if (t === 'dark' || t === 'light') document.documentElement.dataset.theme = t;
} catch (e) { /* storage disabled: follow the system */ }

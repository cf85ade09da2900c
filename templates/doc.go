// Package templates holds the hosted pages' HTML templates, embedded in the
// binary. base.html is the layout (theme title, brand and stylesheet links);
// every other file defines the "content" block of one page and is rendered
// by internal/web as base.html plus that file. Element ids and form field
// names follow DESIGN.md §4 (#error; username, password, code, _csrf).
package templates

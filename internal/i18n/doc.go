// Package i18n owns the hosted pages' languages: the go-i18n bundle of the
// page catalogs (templates/locales/pages.<lang>.toml, whose message ids are
// the English texts, as with gettext), the choice of a request's language
// (ui_locales, then the user's stored locale, then Accept-Language, then the
// AuthConfig's defaultLocale, then English), and a Localizer that applies
// an AuthConfig's own wording of any message before the catalog's.
package i18n

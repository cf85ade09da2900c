// Package store defines Gatehouse's storage contract: the record types every
// other package persists, the Store interface that backends implement, and the
// sentinel errors callers match on. It imports neither gorm nor fosite, so the
// domain packages stay independent of how and where data is kept; backends live
// in sub-packages (gormstore) and prove themselves with the conformance suite.
package store

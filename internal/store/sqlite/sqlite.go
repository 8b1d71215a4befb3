// Package sqlite implements standby.Store on SQLite (modernc.org/sqlite, no
// cgo). One file holds everything; WAL lets readers run beside the writer.
//
// Writes go through a single connection whose transactions begin
// IMMEDIATE, so a transaction never has to upgrade a read lock. One writer
// goroutine owns that connection and commits groups of writes together:
// concurrent writes (checkouts above all) share one transaction and one
// fsync instead of queueing for one each, and every caller is answered only
// after the commit that holds its write is synced to disk (by default: a
// syncer goroutine fdatasyncs the WAL while the writer already runs the
// next batch, so durability costs the writer no waiting). Reads go through a separate pool of
// read-only connections and never wait for a writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/standbyhq/standby"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures a Store.
type Config struct {
	// Path is the database file. Required; its directory is created.
	Path string
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
	// Synchronous is the durability of writes: "FULL" (default) answers a
	// write only once its commit is synced to disk, so every acknowledged
	// write survives power loss (the store syncs the WAL itself, pipelined
	// with the next commits: see walSyncer); "NORMAL" answers at commit,
	// which survives a crash of the process but may lose the last
	// acknowledged writes on power loss or an OS crash.
	Synchronous string
	// Clock gives "now" for the last-hour status counts of pools. Default:
	// standby.SystemClock.
	Clock standby.Clock
	// ReadConns is the size of the read connection pool. Default: 4 or
	// GOMAXPROCS, whichever is larger.
	ReadConns int
}

// Store is a standby.Store on one SQLite file.
type Store struct {
	write *sql.DB // one connection, IMMEDIATE transactions
	read  *sql.DB // query_only connections
	// reader runs the lookups on read through prepared statements.
	reader *stmtCache
	log    *slog.Logger
	clock  standby.Clock
	stmts  checkoutStmts
	// writer owns the write connection: every write goes through its
	// group commit.
	writer    *writer
	gen       atomic.Uint64 // see Generation
	closeOnce sync.Once
}

var _ standby.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, migrates it to
// the current schema and returns the store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite: Config.Path is required")
	}
	syncMode := strings.ToUpper(cfg.Synchronous)
	switch syncMode {
	case "":
		syncMode = "FULL"
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("sqlite: Config.Synchronous must be FULL or NORMAL, not %q", cfg.Synchronous)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = standby.SystemClock{}
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: create directory: %w", err)
		}
	}

	common := url.Values{}
	common.Add("_pragma", "busy_timeout(10000)")
	common.Add("_pragma", "foreign_keys(1)")
	// temp_store(MEMORY): the savepoint of each write in a group commit
	// journals the pages it changes; in a temp file that is a write
	// syscall per page, in memory a copy.
	// The write connection never syncs on commit: under FULL the store's
	// own WAL syncer does, off the writer's path (see walSyncer), and
	// answers only after it; under NORMAL nobody does.
	wq := url.Values{"_pragma": append([]string{"journal_mode(WAL)", "synchronous(NORMAL)", "temp_store(MEMORY)"}, common["_pragma"]...)}
	wq.Set("_txlock", "immediate")
	rq := url.Values{"_pragma": append([]string{"query_only(1)"}, common["_pragma"]...)}

	if err := migrate(ctx, cfg.Path+"?"+wq.Encode(), cfg.Logger); err != nil {
		return nil, err
	}

	write, err := sql.Open("sqlite", cfg.Path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", cfg.Path+"?"+rq.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	read.SetMaxOpenConns(cfg.ReadConns)
	read.SetMaxIdleConns(cfg.ReadConns)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)

	s := &Store{write: write, read: read, reader: &stmtCache{db: read}, log: cfg.Logger, clock: cfg.Clock}
	if err := s.prepare(ctx); err != nil {
		s.stmts.close()
		return nil, errors.Join(err, read.Close(), write.Close())
	}
	var syncer *walSyncer
	if syncMode == "FULL" {
		syncer = newWALSyncer(cfg.Path)
	}
	if s.writer, err = newWriter(ctx, write, syncer); err != nil {
		if syncer != nil {
			syncer.close()
		}
		s.stmts.close()
		return nil, errors.Join(err, read.Close(), write.Close())
	}
	s.log.Info("store opened", "path", cfg.Path, "synchronous", syncMode)
	return s, nil
}

// migrate brings the schema up to date. It uses its own short-lived handle
// because goose holds one connection while it queries through another,
// which the single-connection write handle could not serve.
func migrate(ctx context.Context, dsn string, log *slog.Logger) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("sqlite: open for migration: %w", err)
	}
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for _, r := range res {
		log.Info("store migrated", "version", r.Source.Version, "file", r.Source.Path)
	}
	return nil
}

// Close finishes the writes already queued, then releases the store.
// Later writes fail. Calling it twice is harmless.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.writer.close()
		s.stmts.close()
		s.reader.close()
		err = errors.Join(s.read.Close(), s.write.Close())
	})
	return err
}

// querier is what both *sql.Tx and the read pool (stmtCache) offer, so
// lookups can run inside a write transaction or on the read pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn as one write of the group commit (see writer): fn sees the
// effects of the writes queued before it, its own failure undoes only its
// own changes, and inTx returns once the shared commit is durable. An error
// from fn is returned as is. fn must use the ctx it is given, which cannot
// be cancelled: a cancelled statement would abort the whole batch.
func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.writer.do(ctx, fn)
}

// specTx is inTx for writes of what checkouts and authentication read
// (projects, keys, templates, builds, tags, pool specs): once the write is
// done, committed or not, it moves Generation on, so caches of those
// records know to refresh.
func (s *Store) specTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	defer s.gen.Add(1)
	return s.inTx(ctx, fn)
}

// Generation counts the writes of projects, API keys, templates, builds,
// tags and warm pool specs made through this Store (not instances,
// sandboxes or controller status). A cache of those records filled after
// reading Generation g is current for as long as Generation is still g.
// It covers this process only, which is all there is: one server owns the
// database file.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// dbError maps a driver error to a standby code by the driver's result
// code: constraint violations are the caller's conflict (unique, primary
// key) or a missing referenced record (foreign key); anything else is
// internal and wrapped with what was being done.
func dbError(err error, doing string) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return standby.Errorf(standby.EConflict, "%s: already exists", doing)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return standby.Errorf(standby.ENotFound, "%s: a record it refers to does not exist", doing)
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", doing, err)
}

func notFound(kind, id string) error {
	return standby.Errorf(standby.ENotFound, "%s %s not found", kind, id)
}

// micro stores a time as microseconds since the epoch.
func micro(t time.Time) int64 { return t.UnixMicro() }

// microPtr stores an optional time (NULL when nil).
func microPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromMicro(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicro(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicro(v.Int64)
	return &t
}

func nullString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func fromNullString(v sql.NullString) *string {
	if !v.Valid {
		return nil
	}
	return &v.String
}

// emptyNull stores "" as NULL (optional references such as pool ids).
func emptyNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// jsonMap encodes a label-like map; an empty one skips the encoder.
func jsonMap[V any](m map[string]V) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// decodeMap decodes a JSON object into a non-nil map.
func decodeMap[V any](s string) (map[string]V, error) {
	m := map[string]V{}
	if s == "" || s == "{}" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("sqlite: decode %q: %w", s, err)
	}
	return m, nil
}

func encodeJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func decodeJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("sqlite: decode: %w", err)
	}
	return nil
}

// metadataText stores metadata verbatim, {} when unset.
func metadataText(m json.RawMessage) string {
	if len(m) == 0 {
		return "{}"
	}
	return string(m)
}

// Page tokens are "<kind>:<key>" in unpadded base64url: opaque to clients,
// and a token of another list or a mangled one is recognised as bad.
func makeToken(kind, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + key))
}

func parseToken(kind, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", standby.Errorf(standby.EBadRequest, "malformed page token")
	}
	k, key, ok := strings.Cut(string(b), ":")
	if !ok || k != kind || key == "" {
		return "", standby.Errorf(standby.EBadRequest, "page token does not belong to this list")
	}
	return key, nil
}

// where accumulates the conditions and arguments of a list query.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

// in adds "col is one of vals" for a non-empty list. The list is one JSON
// argument, so a query's text does not depend on its length: one
// prepared statement (stmtCache) serves every page of ids.
func (w *where) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	list, _ := json.Marshal(vals) // []string always encodes
	w.add(col+" IN (SELECT value FROM json_each(?))", string(list))
}

// labels adds one condition per wanted label on a JSON labels column.
func (w *where) labels(col string, want map[string]string) {
	for _, k := range standby.SortedKeys(want) {
		w.add("EXISTS (SELECT 1 FROM json_each("+col+") WHERE key = ? AND value = ?)", k, want[k])
	}
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// listByID runs a list query paged by id in creation order: it appends the
// token condition, orders by id and fetches one row more than the page to
// learn whether there is a next page. scan reads one row; id names a
// record, for the next page's token.
func listByID[T any](ctx context.Context, q querier, kind, selectFrom, idCol string, w *where, p standby.Page, scan func(scanner) (*T, error), id func(*T) string) ([]*T, string, error) {
	after, err := parseToken(kind, p.Token)
	if err != nil {
		return nil, "", err
	}
	if after != "" {
		w.add(idCol+" > ?", after)
	}
	limit := p.Limit()
	rows, err := q.QueryContext(ctx, selectFrom+w.String()+" ORDER BY "+idCol+" LIMIT ?", append(w.args, limit+1)...)
	if err != nil {
		return nil, "", dbError(err, "list "+kind)
	}
	defer rows.Close()
	out := []*T{}
	next := ""
	for rows.Next() {
		if len(out) == limit {
			next = makeToken(kind, id(out[limit-1]))
			break
		}
		v, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", dbError(err, "list "+kind)
	}
	return out, next, nil
}

// affected returns not_found when an UPDATE or DELETE touched no row.
func affected(res sql.Result, err error, kind, id, doing string) error {
	if err != nil {
		return dbError(err, doing)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return dbError(err, doing)
	}
	if n == 0 {
		return notFound(kind, id)
	}
	return nil
}

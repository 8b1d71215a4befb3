// Package sqlite implements standby.Store on SQLite (modernc.org/sqlite, no
// cgo). One file holds everything; WAL lets readers run beside the writer.
//
// Writes go through a single connection whose transactions begin
// IMMEDIATE, so writers queue in database/sql instead of failing with
// SQLITE_BUSY, and a transaction never has to upgrade a read lock. Reads go
// through a separate pool of read-only connections and never wait for a
// writer.
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
	// Synchronous is SQLite's synchronous mode for writes: "FULL" (default)
	// makes every acknowledged write durable even on power loss; "NORMAL"
	// is faster and survives a process crash but may lose the last commits
	// on power loss.
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
	write  *sql.DB // one connection, IMMEDIATE transactions
	read   *sql.DB // query_only connections
	log    *slog.Logger
	clock  standby.Clock
	stmts  checkoutStmts
	closed chan struct{}
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
	wq := url.Values{"_pragma": append([]string{"journal_mode(WAL)", "synchronous(" + syncMode + ")"}, common["_pragma"]...)}
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

	s := &Store{write: write, read: read, log: cfg.Logger, clock: cfg.Clock, closed: make(chan struct{})}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
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

// Close releases the store. Calling it twice is harmless.
func (s *Store) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
		close(s.closed)
	}
	s.stmts.close()
	return errors.Join(s.read.Close(), s.write.Close())
}

// querier is what both *sql.DB and *sql.Tx offer, so lookups can run
// inside a write transaction or on the read pool.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in one IMMEDIATE write transaction and commits when fn
// returns nil. An error from fn is returned as is.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	// Deferred so that a panicking fn still frees the only write
	// connection; a no-op after Commit.
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

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

// in adds "col IN (?, ?, …)" for a non-empty list.
func (w *where) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	w.conds = append(w.conds, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
	for _, v := range vals {
		w.args = append(w.args, v)
	}
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
// learn whether there is a next page. scan reads one row and returns its id.
func listByID(ctx context.Context, q querier, kind, selectFrom, idCol string, w *where, p standby.Page, scan func(*sql.Rows) (string, error)) (string, error) {
	after, err := parseToken(kind, p.Token)
	if err != nil {
		return "", err
	}
	if after != "" {
		w.add(idCol+" > ?", after)
	}
	limit := p.Limit()
	rows, err := q.QueryContext(ctx, selectFrom+w.String()+" ORDER BY "+idCol+" LIMIT ?", append(w.args, limit+1)...)
	if err != nil {
		return "", dbError(err, "list "+kind)
	}
	defer rows.Close()
	var n int
	var last, next string
	for rows.Next() {
		n++
		if n > limit {
			next = makeToken(kind, last)
			break
		}
		if last, err = scan(rows); err != nil {
			return "", err
		}
	}
	if err := rows.Err(); err != nil {
		return "", dbError(err, "list "+kind)
	}
	return next, nil
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

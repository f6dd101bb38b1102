// Command detect is the detection matrix's application (bench/detection.py): a Go
// service on database/sql and lib/pq that either leaks connections in one of the ways
// docs/detection.md lists, or uses them in one of the healthy shapes that must never be
// called a leak. It pushes its pool statistics to poolwatch as a real service would:
// json.Marshal(db.Stats()) every PUSH_EVERY seconds, or client_golang's
// DBStatsCollector through the push package (delimited protobuf) with PUSH=pushgateway.
//
// It prints what happened to it, one line each, for the harness:
//
//	EVENT first_leak <unix seconds>   the first connection leaked (stuck from now on)
//	EVENT pool_full <unix seconds>    the pool reached SetMaxOpenConns
//	EVENT server_full <unix seconds>  the server refused a connection (53300)
//	STATS <unix seconds> <in use> <open>  the pool, every second
//
// Environment: APP (also application_name), INSTANCE, DATABASE_URL, POOLWATCH_URL, MODE,
// LEAK_EVERY and LEAK_AFTER (seconds), MAX_OPEN, MAX_IDLE, LIFETIME (seconds), PUSH
// (json or pushgateway), PUSH_EVERY (seconds).
//
// Modes. Leaks: rows (a query whose *sql.Rows is never closed, one per LEAK_EVERY),
// beside (a driver connection opened beside the pool and never closed), per-request (a
// pool opened per request and never closed), tx (a transaction begun and never
// finished). Healthy: steady, bursts, fanout, warmup, shortlived. Every mode also
// serves light healthy traffic through the pool.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/push"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func seconds(name, def string) time.Duration {
	f, err := strconv.ParseFloat(env(name, def), 64)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	return time.Duration(f * float64(time.Second))
}

func number(name, def string) int {
	n, err := strconv.Atoi(env(name, def))
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	return n
}

var (
	eventsMu sync.Mutex
	events   = map[string]bool{}
)

// event prints an event the first time it happens.
func event(name string) {
	eventsMu.Lock()
	defer eventsMu.Unlock()
	if events[name] {
		return
	}
	events[name] = true
	fmt.Printf("EVENT %s %.3f\n", name, float64(time.Now().UnixNano())/1e9)
}

// check reports a refused connection as the server being full.
func check(err error) {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "53300" {
		event("server_full")
	}
}

// work runs one short query through the pool, as a request would.
func work(db *sql.DB, sleep string) {
	var one int
	err := db.QueryRow("SELECT 1 FROM pg_sleep(" + sleep + ")").Scan(&one)
	if err != nil {
		check(err)
	}
}

// worker runs queries with think time between them until stop closes.
func worker(db *sql.DB, sleep string, think time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		work(db, sleep)
		time.Sleep(time.Duration(rand.Int63n(int64(think) + 1)))
	}
}

func main() {
	app := env("APP", "orders-worker")
	instance := env("INSTANCE", app+"-1")
	mode := env("MODE", "rows")
	dsn := env("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres?sslmode=disable")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	dsn += sep + "application_name=" + url.QueryEscape(app)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		log.Fatal(err)
	}
	maxOpen := number("MAX_OPEN", "0")
	lifetime := seconds("LIFETIME", "1800")
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(number("MAX_IDLE", "2"))
	db.SetConnMaxLifetime(lifetime)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int, status text)`); err != nil {
		check(err)
	}

	pushEvery := seconds("PUSH_EVERY", "15")
	base := env("POOLWATCH_URL", "http://127.0.0.1:19187")
	switch env("PUSH", "json") {
	case "json":
		target := fmt.Sprintf("%s/api/v1/pools/%s/main?instance=%s&max_lifetime_seconds=%d",
			base, url.PathEscape(app), url.QueryEscape(instance), int(lifetime.Seconds()))
		go func() {
			for {
				body, _ := json.Marshal(db.Stats())
				if resp, err := http.Post(target, "application/json", bytes.NewReader(body)); err == nil {
					resp.Body.Close()
				}
				time.Sleep(pushEvery)
			}
		}()
	case "pushgateway":
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewDBStatsCollector(db, "main"))
		pusher := push.New(base, app).Grouping("instance", instance).Gatherer(reg)
		go func() {
			for {
				if err := pusher.Push(); err != nil {
					log.Printf("push: %v", err)
				}
				time.Sleep(pushEvery)
			}
		}()
	default:
		log.Fatalf("PUSH: expected json or pushgateway")
	}
	go func() {
		for n := 0; ; n++ {
			st := db.Stats()
			if maxOpen > 0 && st.InUse >= maxOpen {
				event("pool_full")
			}
			if n%5 == 0 {
				fmt.Printf("STATS %.3f %d %d\n", float64(time.Now().UnixNano())/1e9, st.InUse, st.OpenConnections)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// Light healthy traffic through the pool, whatever the mode.
	never := make(chan struct{})
	go worker(db, "0.01", 500*time.Millisecond, never)

	every := seconds("LEAK_EVERY", "1")
	after := seconds("LEAK_AFTER", "60")
	switch mode {
	case "rows", "beside", "per-request", "tx":
		time.Sleep(after)
		leak(db, dsn, mode, every)
	case "steady":
		for i := 0; i < 8; i++ {
			go worker(db, "0.05", 200*time.Millisecond, never)
		}
	case "bursts":
		// Every three minutes 30 callers run queries for 20 s, then stop.
		go func() {
			for {
				time.Sleep(60 * time.Second)
				stop := make(chan struct{})
				for i := 0; i < 30; i++ {
					go worker(db, "0.5", 50*time.Millisecond, stop)
				}
				time.Sleep(20 * time.Second)
				close(stop)
				time.Sleep(100 * time.Second)
			}
		}()
	case "fanout":
		// A batch: a worker added every 5 s for 7 minutes, then all stop; a minute's
		// rest; again.
		go func() {
			for {
				stop := make(chan struct{})
				for i := 0; i < 84; i++ {
					go worker(db, "0.2", 100*time.Millisecond, stop)
					time.Sleep(5 * time.Second)
				}
				close(stop)
				time.Sleep(60 * time.Second)
			}
		}()
	case "warmup":
		// Concurrency ramps from 1 to 30 over four minutes; idle connections are kept.
		db.SetMaxIdleConns(30)
		go func() {
			for i := 0; i < 30; i++ {
				go worker(db, "0.1", time.Second, never)
				time.Sleep(8 * time.Second)
			}
		}()
	case "shortlived":
		// Each job opens its own connection beside the pool, runs a query, closes it.
		go func() {
			for range time.Tick(time.Second) {
				c, err := pq.Open(dsn)
				if err != nil {
					check(err)
					continue
				}
				if q, ok := c.(driver.Queryer); ok {
					if rows, err := q.Query("SELECT 1", nil); err == nil {
						rows.Close()
					}
				}
				c.Close()
			}
		}()
		for i := 0; i < 2; i++ {
			go worker(db, "0.05", 300*time.Millisecond, never)
		}
	default:
		log.Fatalf("MODE %q unknown", mode)
	}
	select {}
}

// leak leaks one connection per `every` the way `mode` says, for ever.
func leak(db *sql.DB, dsn, mode string, every time.Duration) {
	var kept []interface{}
	tick := time.NewTicker(every)
	for n := 1; ; n++ {
		switch mode {
		case "rows":
			// The classic incident: rows never closed, so the connection never returns.
			rows, err := db.QueryContext(context.Background(),
				`SELECT id, status FROM orders WHERE customer_id = $1 AND status = 'pending'`, n)
			if err != nil {
				check(err)
				break
			}
			kept = append(kept, rows)
			event("first_leak")
		case "beside":
			// A driver connection opened beside the pool and never closed.
			c, err := pq.Open(dsn)
			if err != nil {
				check(err)
				break
			}
			if q, ok := c.(driver.Queryer); ok {
				if rows, err := q.Query("SELECT 1", nil); err == nil {
					rows.Close()
				}
			}
			kept = append(kept, c)
			event("first_leak")
		case "per-request":
			// A pool opened per request and never closed: it keeps its idle connection.
			stray, err := sql.Open("postgres", dsn)
			if err != nil {
				log.Fatal(err)
			}
			var one int
			if err := stray.QueryRow("SELECT 1").Scan(&one); err != nil {
				check(err)
				break
			}
			kept = append(kept, stray)
			event("first_leak")
		case "tx":
			// A transaction begun and never committed or rolled back.
			tx, err := db.Begin()
			if err != nil {
				check(err)
				break
			}
			if _, err := tx.Exec(`UPDATE orders SET status = status WHERE customer_id = $1`, n); err != nil {
				check(err)
				break
			}
			kept = append(kept, tx)
			event("first_leak")
		}
		<-tick.C
	}
}

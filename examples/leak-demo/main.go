// Command leak-demo is a small worker that leaks PostgreSQL connections the way the
// incident in docs/ did: it runs a query per message and drops the *sql.Rows without
// closing it, so each message checks a connection out of the pool forever. The server
// shows those backends idle in ClientRead with an ever older state_change, and
// SetConnMaxLifetime never closes them because they never return to the pool.
//
// It pushes json.Marshal(db.Stats()) to poolwatch, as a real application would.
//
// Environment:
//
//	POOLWATCH_URL  poolwatch's push address (default http://127.0.0.1:19187)
//	DATABASE_URL   the database (default postgres://postgres@127.0.0.1/postgres?sslmode=disable)
//	APP            application name, also its application_name (default orders-worker)
//	MODE           leak (default): one leaked connection per LEAK_EVERY;
//	               burst: BURST connections checked out together, held, then released
//	LEAK_EVERY     seconds between leaked connections (default 2)
//	BURST          connections in a burst (default 20)
//	PUSH_EVERY     seconds between pushes (default 2)
//	MAX_OPEN       SetMaxOpenConns (default 50)
//	DURATION       seconds to run, 0 for ever (default 0)
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/lib/pq"
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

func main() {
	app := env("APP", "orders-worker")
	mode := env("MODE", "leak")
	maxOpen, _ := strconv.Atoi(env("MAX_OPEN", "50"))
	burst, _ := strconv.Atoi(env("BURST", "20"))
	lifetime := 60 * time.Second

	dsn := env("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres?sslmode=disable")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("postgres", dsn+sep+"application_name="+app)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetConnMaxLifetime(lifetime)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int, status text)`); err != nil {
		log.Fatal(err)
	}

	push := fmt.Sprintf("%s/api/v1/pools/%s/primary?max_lifetime_seconds=%d",
		env("POOLWATCH_URL", "http://127.0.0.1:19187"), app, int(lifetime.Seconds()))
	go func() {
		for range time.Tick(seconds("PUSH_EVERY", "2")) {
			body, _ := json.Marshal(db.Stats())
			resp, err := http.Post(push, "application/json", bytes.NewReader(body))
			if err != nil {
				log.Printf("push: %v", err)
				continue
			}
			resp.Body.Close()
			log.Printf("pushed %s", body)
		}
	}()

	var stop <-chan time.Time
	if d := seconds("DURATION", "0"); d > 0 {
		stop = time.After(d)
	}
	switch mode {
	case "leak":
		tick := time.NewTicker(seconds("LEAK_EVERY", "2"))
		for customer := 1; ; customer++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// The bug: rows is never closed, so its connection never returns.
			rows, err := db.QueryContext(context.Background(),
				`SELECT id, status FROM orders WHERE customer_id = $1 AND status = 'pending'`, customer)
			if err != nil {
				log.Printf("query: %v", err)
				continue
			}
			_ = rows
		}
	case "burst":
		for {
			var held []*sql.Tx
			for i := 0; i < burst; i++ {
				tx, err := db.Begin()
				if err != nil {
					log.Fatal(err)
				}
				held = append(held, tx)
			}
			time.Sleep(seconds("HOLD", "10"))
			for _, tx := range held {
				tx.Rollback()
			}
			select {
			case <-stop:
				return
			case <-time.After(seconds("PAUSE", "20")):
			}
		}
	default:
		log.Fatalf("MODE %q: expected leak or burst", mode)
	}
}

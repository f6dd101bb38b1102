// Command go-dbstats opens a database/sql pool and pushes json.Marshal(db.Stats()) to
// poolwatch every few seconds: no mapping code, the sql.DBStats JSON is accepted as is.
//
//	POOLWATCH_URL=http://127.0.0.1:19187 DATABASE_URL=postgres://postgres@127.0.0.1/postgres?sslmode=disable go run .
//
// Environment: POOLWATCH_URL (default http://127.0.0.1:19188, the sidecar's push
// address), DATABASE_URL, APP (default go-dbstats), POD_NAME (the instance label),
// PUSHES (stop after this many pushes; default 0, forever), HOLD (connections to keep
// checked out, to see them in the pool and on the server).
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/url"
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

func main() {
	base := env("POOLWATCH_URL", "http://127.0.0.1:19188")
	app := env("APP", "go-dbstats")
	pushes, _ := strconv.Atoi(env("PUSHES", "0"))
	hold, _ := strconv.Atoi(env("HOLD", "0"))
	lifetime := 30 * time.Minute

	dsn := env("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres?sslmode=disable")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("postgres", dsn+sep+"application_name="+app)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	db.SetConnMaxLifetime(lifetime)

	// Check out HOLD connections and keep them, as a leak would.
	for i := 0; i < hold; i++ {
		conn, err := db.Conn(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
	}

	q := url.Values{}
	q.Set("instance", env("POD_NAME", ""))
	q.Set("application_name", app)
	q.Set("max_lifetime_seconds", strconv.Itoa(int(lifetime.Seconds())))
	target := fmt.Sprintf("%s/api/v1/pools/%s/primary?%s", base, app, q.Encode())

	for n := 1; pushes == 0 || n <= pushes; n++ {
		if err := db.Ping(); err != nil {
			log.Printf("ping: %v", err)
		}
		body, err := json.Marshal(db.Stats())
		if err != nil {
			log.Fatal(err)
		}
		resp, err := http.Post(target, "application/json", bytes.NewReader(body))
		if err != nil {
			log.Printf("push: %v", err)
		} else {
			if resp.StatusCode != http.StatusOK {
				log.Printf("push rejected: %s", resp.Status)
			}
			resp.Body.Close()
		}
		fmt.Println(string(body))
		if pushes == 0 || n < pushes {
			time.Sleep(5 * time.Second)
		}
	}
}

// Command go-push is an application that already uses client_golang: it registers the
// stock collectors.NewDBStatsCollector and pushes with the stock push package (delimited
// protobuf, client_golang's default). Pointed at poolwatch instead of a Pushgateway, its
// pool is analysed with no other change.
//
//	POOLWATCH_URL=http://127.0.0.1:19188 DATABASE_URL=postgres://... go run .
//
// Environment: POOLWATCH_URL, DATABASE_URL, JOB (default billing), POD_NAME (the
// instance), HOLD (connections kept checked out), PUSHES (0: for ever), EVERY (seconds).
package main

import (
	"context"
	"database/sql"
	"log"
	"os"
	"strconv"
	"time"

	_ "github.com/lib/pq"
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

func main() {
	db, err := sql.Open("postgres", env("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres?sslmode=disable"))
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	hold, _ := strconv.Atoi(env("HOLD", "0"))
	for i := 0; i < hold; i++ {
		conn, err := db.Conn(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewDBStatsCollector(db, "orders"), collectors.NewGoCollector())
	pusher := push.New(env("POOLWATCH_URL", "http://127.0.0.1:19188"), env("JOB", "billing")).
		Grouping("instance", env("POD_NAME", "pod-1")).
		Gatherer(reg)

	pushes, _ := strconv.Atoi(env("PUSHES", "0"))
	every, _ := strconv.Atoi(env("EVERY", "10"))
	for n := 1; pushes == 0 || n <= pushes; n++ {
		if err := pusher.Push(); err != nil {
			log.Fatalf("push: %v", err)
		}
		log.Printf("pushed %d", n)
		if pushes == 0 || n < pushes {
			time.Sleep(time.Duration(every) * time.Second)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// backupStore is one store of a data directory that can copy itself while
// serving.
type backupStore interface {
	Backup(dir string) error
}

// backupHandler serves POST /api/v1/admin/backup?dir=DIR: a consistent
// copy of the data directory into DIR (absolute, not existing), laid out
// as a data directory, so `immune serve --data-dir DIR` runs on it. The
// metrics store is copied first: a deployment in the copy never refers to
// samples the copy lacks.
func backupHandler(tsdbStore, deployments backupStore, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dir := r.FormValue("dir")
		if !filepath.IsAbs(dir) {
			writeBackupError(w, http.StatusBadRequest, fmt.Errorf("dir must be an absolute path, got %q", dir))
			return
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			writeBackupError(w, http.StatusBadRequest, fmt.Errorf("%s already exists: a backup goes to a new directory", dir))
			return
		}
		start := time.Now()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			writeBackupError(w, http.StatusInternalServerError, err)
			return
		}
		err := tsdbStore.Backup(tsdbDir(dir))
		if err == nil {
			err = deployments.Backup(deploymentsDir(dir))
		}
		if err != nil {
			log.Error("backup failed", "dir", dir, "err", err)
			writeBackupError(w, http.StatusInternalServerError, errors.Join(err, os.RemoveAll(dir)))
			return
		}
		log.Info("backup written", "dir", dir, "took", time.Since(start))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]string{"dir": dir}})
	}
}

func writeBackupError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": err.Error()})
}

// deploymentsDir is where a data directory keeps deployments and verdicts.
func deploymentsDir(dataDir string) string { return filepath.Join(dataDir, "deployments") }

// runBackup asks a running server for a consistent copy of its data
// directory into --to.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "new directory for the copy, on the server's machine (required)")
	server := fs.String("url", "http://127.0.0.1:9480", "the server's HTTP address")
	tokenFile := fs.String("token-file", "", "file holding a bearer token with the admin scope, if the server has --auth-file")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the copy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || fs.NArg() > 0 {
		return errors.New("backup: --to DIR is required, and nothing else")
	}
	dir, err := filepath.Abs(*to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(*server, "/")+"/api/v1/admin/backup",
		strings.NewReader(url.Values{"dir": {dir}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if *tokenFile != "" {
		token, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("backup: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "backup written to %s\n", dir)
	return nil
}

package proxyd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The gateway's HTTPS API tells clients (rdsgate db ls/connect/env) what
// they need: how to sign identity tokens for this gateway, and which
// databases the caller may reach.

// GatewayInfo is GET /v1/gateway.
type GatewayInfo struct {
	Audience     string `json:"audience,omitempty"` // for identity tokens; "" without IAM
	STSRegion    string `json:"sts_region,omitempty"`
	STSEndpoint  string `json:"sts_endpoint,omitempty"`
	PostgresPort int    `json:"postgres_port,omitempty"`
	MySQLPort    int    `json:"mysql_port,omitempty"`
	Certificates bool   `json:"client_certificates"`
}

// DatabaseAccess is one entry of GET /v1/databases.
type DatabaseAccess struct {
	Name     string            `json:"name"`
	Protocol string            `json:"protocol"`
	Labels   map[string]string `json:"labels,omitempty"`
	DBUsers  []string          `json:"db_users"`
	DBNames  []string          `json:"db_names"`
	Rules    []string          `json:"rules"`
}

// DatabasesResponse is GET /v1/databases.
type DatabasesResponse struct {
	Identity  string           `json:"identity"`
	Databases []DatabaseAccess `json:"databases"`
}

func (s *Server) startAPI(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/gateway", s.apiGateway)
	mux.HandleFunc("GET /v1/databases", s.apiDatabases)
	s.apiLn = ln
	s.api = &http.Server{Handler: mux, TLSConfig: &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.tlsForClients(), nil }}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.api.ServeTLS(ln, "", "") }()
	return nil
}

func port(ln interface{ Addr() net.Addr }) int {
	if ln == nil {
		return 0
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func (s *Server) apiGateway(w http.ResponseWriter, _ *http.Request) {
	info := GatewayInfo{Certificates: s.config().Gateway.ClientCA != ""}
	if ln := s.listenerOf("gateway-postgres"); ln != nil {
		info.PostgresPort = port(ln)
	}
	if ln := s.listenerOf("gateway-mysql"); ln != nil {
		info.MySQLPort = port(ln)
	}
	if v := s.identities; v != nil {
		info.Audience, info.STSRegion, info.STSEndpoint = v.cfg.Audience, v.cfg.Region, v.cfg.STSEndpoint
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) apiDatabases(w http.ResponseWriter, r *http.Request) {
	id := certIdentity(r.TLS)
	tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !id.IsZero():
	case bearer && s.identities != nil && IsIdentityToken(tok):
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		var err error
		if id, err = s.identities.verify(ctx, tok); err != nil {
			// Only the gateway's own words go back: an upstream error can
			// hold the presigned request, which anyone could replay.
			var refused *errIdentity
			if errors.As(err, &refused) {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": refused.msg})
				return
			}
			s.junk.log(s.log, "cannot check an identity token with STS", "error", err, "token", tokenDigest(tok))
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the gateway could not check your identity token with STS; try again (the gateway's log says why)"})
			return
		}
	default:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "prove who you are with a client certificate or an identity token (Authorization: Bearer rdsgate-iam-v1...)"})
		return
	}
	resp := DatabasesResponse{Identity: id.String(), Databases: []DatabaseAccess{}}
	for i := range s.config().Databases {
		db := &s.config().Databases[i]
		users, names, rules, ok := s.rules().Reachable(id, db)
		if !ok {
			continue
		}
		resp.Databases = append(resp.Databases, DatabaseAccess{Name: db.Name, Protocol: db.Protocol, Labels: db.Labels, DBUsers: users, DBNames: names, Rules: rules})
	}
	sort.Slice(resp.Databases, func(i, j int) bool { return resp.Databases[i].Name < resp.Databases[j].Name })
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// A peer server for bench/: the bench subset of Switchboard's protocol on
// gorilla/websocket, in the usual gorilla hub pattern: one goroutine per
// connection reading, one write pump per connection fed by a buffered
// channel, and one hub goroutine that owns the rooms.
//
//	hub PORT
//
// /echo  every message is sent back as received (same opcode).
// /ws    {"type":"join","room":R}                -> joins R, answers
//
//	                                           {"type":"history","room":R,"messages":[]}
//	{"type":"message","room":R,"content":C} -> {"type":"message","room":R,"content":C}
//	                                           to every member of R, the sender included.
//
// A closed connection leaves its rooms. Listens on 127.0.0.1 only.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 64 * 1024
	sendQueue      = 256 // messages queued per client before it counts as too slow
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(r *http.Request) bool { return true },
}

type client struct {
	conn  *websocket.Conn
	send  chan *websocket.PreparedMessage
	rooms map[string]bool // owned by the hub goroutine
}

type roomOp struct {
	c    *client
	room string
}

type publish struct {
	c    *client
	room string
	msg  *websocket.PreparedMessage
}

type hub struct {
	rooms      map[string]map[*client]bool
	join       chan roomOp
	publish    chan publish
	unregister chan *client
}

func newHub() *hub {
	return &hub{
		rooms:      make(map[string]map[*client]bool),
		join:       make(chan roomOp, 256),
		publish:    make(chan publish, 256),
		unregister: make(chan *client, 256),
	}
}

// drop forgets a client the hub will no longer write to and closes its queue,
// which ends its write pump.
func (h *hub) drop(c *client) {
	for room := range c.rooms {
		members := h.rooms[room]
		delete(members, c)
		if len(members) == 0 {
			delete(h.rooms, room)
		}
	}
	c.rooms = nil
	close(c.send)
}

func (h *hub) run() {
	for {
		select {
		case op := <-h.join:
			if op.c.rooms == nil { // already dropped
				continue
			}
			members := h.rooms[op.room]
			if members == nil {
				members = make(map[*client]bool)
				h.rooms[op.room] = members
			}
			members[op.c] = true
			op.c.rooms[op.room] = true
			ack, _ := encode(map[string]interface{}{"type": "history", "room": op.room, "messages": []interface{}{}})
			pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, ack)
			select {
			case op.c.send <- pm:
			default:
				h.drop(op.c)
			}
		case p := <-h.publish:
			members := h.rooms[p.room]
			if !members[p.c] {
				continue
			}
			for m := range members {
				select {
				case m.send <- p.msg:
				default: // too slow: the usual hub closes it rather than wait
					h.drop(m)
				}
			}
		case c := <-h.unregister:
			if c.rooms != nil {
				h.drop(c)
			}
		}
	}
}

// encode is json.Marshal without HTML escaping, so content goes out as it came.
func encode(v interface{}) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

type inbound struct {
	Type    string  `json:"type"`
	Room    string  `json:"room"`
	Content *string `json:"content"`
}

type outbound struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Content string `json:"content"`
}

func (c *client) readPump(h *hub) {
	defer func() {
		h.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { c.conn.SetReadDeadline(time.Now().Add(pongWait)); return nil })
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(pongWait))
		if kind != websocket.TextMessage {
			continue
		}
		var in inbound
		if json.Unmarshal(data, &in) != nil {
			continue
		}
		switch in.Type {
		case "join":
			h.join <- roomOp{c, in.Room}
		case "message":
			if in.Content == nil {
				continue
			}
			out, err := encode(outbound{"message", in.Room, *in.Content})
			if err != nil {
				continue
			}
			// Encode once (JSON and frame); every member's queue holds the same message.
			pm, err := websocket.NewPreparedMessage(websocket.TextMessage, out)
			if err != nil {
				continue
			}
			h.publish <- publish{c, in.Room, pm}
		}
	}
}

func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WritePreparedMessage(msg); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func serveEcho(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetReadLimit(maxMessageSize)
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if err := conn.WriteMessage(kind, data); err != nil {
			return
		}
	}
}

func serveHub(h *hub, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{conn: conn, send: make(chan *websocket.PreparedMessage, sendQueue), rooms: make(map[string]bool)}
	go c.writePump()
	go c.readPump(h)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hub PORT")
		os.Exit(2)
	}
	addr := "127.0.0.1:" + os.Args[1]
	h := newHub()
	go h.run()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", serveEcho)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { serveHub(h, w, r) })
	srv := &http.Server{Addr: addr, Handler: mux}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("gorilla peer: cannot listen on %s: %v", addr, err)
	}
	fmt.Printf("gorilla peer listening on %s\n", addr)
	log.Fatal(srv.Serve(ln))
}

-- miltertest -D socket=inet:NNNN@127.0.0.1 -s mailveil-milter.lua (or socket=unix:/path):
-- drives `mailveil milter --listen ... --strip-read-receipts` directly, without an MTA. Prints PASS or
-- FAIL lines; exits 1 on the first failure (miltertest prints nothing for a Lua error,
-- so every step goes through step()).
function step(name, f, ...)
  local ok, err = pcall(f, ...)
  if not ok then print("FAIL " .. name .. ": " .. tostring(err)); os.exit(1) end
  if err ~= nil then print("FAIL " .. name .. " returned: " .. tostring(err)); os.exit(1) end
end
function check(what, ok)
  if not ok then print("FAIL " .. what); os.exit(1) end
  print("PASS " .. what)
end

conn = mt.connect(socket)
if conn == nil then print("FAIL mt.connect()"); os.exit(1) end
-- version 6, all actions, all protocol steps offered (the default negotiation fails)
step("negotiate", mt.negotiate, conn, 6, 511, 2097151)
step("conninfo", mt.conninfo, conn, "client.example.org", "127.0.0.1")
step("helo", mt.helo, conn, "client.example.org")

-- 1. a tracked HTML mail: report header on top, body rewritten, read receipt removed
step("mailfrom", mt.mailfrom, conn, "<news@sender.example>")
step("rcptto", mt.rcptto, conn, "<alice@example.test>")
step("header", mt.header, conn, "From", " news@sender.example")
step("header", mt.header, conn, "To", " alice@example.test")
step("header", mt.header, conn, "Subject", " miltertest tracked")
step("header", mt.header, conn, "Disposition-Notification-To", " news@sender.example")
step("header", mt.header, conn, "MIME-Version", " 1.0")
step("header", mt.header, conn, "Content-Type", " text/html; charset=utf-8")
step("eoh", mt.eoh, conn)
step("body", mt.bodystring, conn, "<html><body><p>Hello reader</p>" ..
  "<img src=\"https://t.example/open.gif?e=alice@example.test\" width=\"1\" height=\"1\">" ..
  "</body></html>\r\n")
step("eom", mt.eom, conn)
check("tracked: X-Mailveil inserted", mt.eom_check(conn, MT_HDRINSERT, "X-Mailveil"))
check("tracked: body replaced", mt.eom_check(conn, MT_BODYCHANGE))
check("tracked: read receipt removed",
  mt.eom_check(conn, MT_HDRDELETE, "Disposition-Notification-To")
  or mt.eom_check(conn, MT_HDRCHANGE, "Disposition-Notification-To"))
check("tracked: continue", mt.getreply(conn) == SMFIR_CONTINUE)

-- 2. a plain mail without anything to clean, on the same connection: only the header
step("mailfrom", mt.mailfrom, conn, "<friend@example.org>")
step("rcptto", mt.rcptto, conn, "<alice@example.test>")
step("header", mt.header, conn, "From", " friend@example.org")
step("header", mt.header, conn, "Subject", " miltertest plain")
step("eoh", mt.eoh, conn)
step("body", mt.bodystring, conn, "Just text, see https://example.org/page\r\n")
step("eom", mt.eom, conn)
check("plain: X-Mailveil inserted", mt.eom_check(conn, MT_HDRINSERT, "X-Mailveil"))
check("plain: body untouched", not mt.eom_check(conn, MT_BODYCHANGE))
check("plain: continue", mt.getreply(conn) == SMFIR_CONTINUE)

mt.disconnect(conn)
print("PASS all")

#!/usr/bin/python3
"""dkimpy (Debian's python3-dkim), the independent implementation the tests check
mailveil against, with its DNS lookups sent to the tests' server on 127.0.0.1.

  dkimpy.py PORT arc-verify    < mail   prints "arc verification: cv=pass success"
                                          (the line dkimpy's own arcverify prints)
  dkimpy.py PORT dkim-verify   < mail   prints "dkim verification: pass" or "... fail"
  dkimpy.py PORT arc-sign SELECTOR DOMAIN KEYFILE SRV_ID < mail
                                        writes the mail with a new ARC set on top (an
                                        upstream forwarder's, for the chain tests)

dkimpy's `dnsfunc` argument is its documented way to choose the resolver; everything
else is dkimpy as shipped.
"""

import sys

import dkim
import dns.resolver


def local_txt(port):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port

    def txt(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except Exception:
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    return txt


def main():
    port = int(sys.argv[1])
    command = sys.argv[2]
    message = sys.stdin.buffer.read()
    dnsfunc = local_txt(port)
    if command == "arc-verify":
        cv, results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
        cv = cv.decode() if isinstance(cv, bytes) else cv
        print("arc verification: cv=%s %s" % (cv, comment))
        for r in results:
            print(
                "  instance %s: ams-valid=%s as-valid=%s cv=%s"
                % (r.get("instance"), r.get("ams-valid"), r.get("as-valid"), r.get("cv"))
            )
    elif command == "dkim-verify":
        ok = dkim.verify(message, dnsfunc=dnsfunc)
        print("dkim verification: %s" % ("pass" if ok else "fail"))
    elif command == "arc-sign":
        selector, domain, keyfile, srv_id = sys.argv[3:7]
        with open(keyfile, "rb") as f:
            key = f.read()
        linesep = dkim.util.get_linesep(message)
        cv = dkim.CV_Pass if b"arc-seal" in message.lower() else dkim.CV_None
        headers = dkim.arc_sign(
            message, selector.encode(), domain.encode(), key, srv_id.encode(), cv,
            linesep=linesep,
        )
        if not headers:
            sys.exit("arc-sign: dkimpy made no ARC set")
        out = sys.stdout.buffer
        for h in headers:
            out.write(h)
        out.write(message)
    else:
        sys.exit("unknown command %s" % command)


if __name__ == "__main__":
    main()

module github.com/go-ldapauth/ldapauth

go 1.26.8

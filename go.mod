module github.com/go-ldapauth/ldapauth

go 1.26.8

require (
	github.com/go-ldap/ldap/v3 v3.4.15
	github.com/stretchr/testify v1.11.1
)

require (
	github.com/Azure/go-ntlmssp v0.1.1 // indirect
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/go-asn1-ber/asn1-ber v1.5.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

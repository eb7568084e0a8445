/**
 * The built-in ontology used when a run names none (`quarry start doc.txt` without `--ontology`): FOAF core for
 * people, organisations and groups, plus a small schema.org subset for places, events, dates, employment and family.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Ontology from "./Ontology.js"

/**
 * The source name the default ontology's errors and runs carry.
 *
 * @since 0.1.0
 * @category constants
 */
export const source = "quarry:default-ontology"

/**
 * The default ontology as Turtle. Changing one triple changes its identity, and with it the identity of every run
 * started with it (resume of such runs then refuses with a typed error), so treat edits like a version bump.
 *
 * @since 0.1.0
 * @category constants
 */
export const turtle = `# Quarry's default ontology.
#
# Terms and definitions from FOAF (Friend of a Friend), http://xmlns.com/foaf/spec/ ,
# by Dan Brickley and Libby Miller, licensed CC BY 1.0 (https://creativecommons.org/licenses/by/1.0/).
# Terms and definitions from schema.org, https://schema.org/ , licensed CC BY-SA 3.0
# (https://creativecommons.org/licenses/by-sa/3.0/); this file, as an adaptation, is shared under CC BY-SA 3.0.
#
# Adaptations: a small subset of both vocabularies; shortened comments; schema.org ranges narrowed to the FOAF
# classes and XSD datatypes Quarry emits; skos:altLabel synonyms added to help extractors match class words in
# text; foaf:Agent, foaf:Document, schema:Place and schema:Event placed under schema:Thing.
# schema.org terms use the http://schema.org/ namespace (as most published data and JSON-LD contexts do).

@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix foaf: <http://xmlns.com/foaf/0.1/> .
@prefix schema: <http://schema.org/> .

# --- Classes ------------------------------------------------------------------------------------------------

schema:Thing a owl:Class ;
  rdfs:label "Thing"@en ;
  rdfs:comment "The most generic type of item."@en .

foaf:Agent a owl:Class ;
  rdfs:subClassOf schema:Thing ;
  rdfs:label "Agent"@en ;
  rdfs:comment "An agent: a person, group, organization or software that does things."@en .

foaf:Person a owl:Class ;
  rdfs:subClassOf foaf:Agent ;
  rdfs:label "Person"@en ;
  skos:altLabel "people"@en ;
  rdfs:comment "A person, alive, dead, real or imaginary."@en .

foaf:Organization a owl:Class ;
  rdfs:subClassOf foaf:Agent ;
  rdfs:label "Organization"@en ;
  skos:altLabel "organisation"@en, "company"@en, "corporation"@en, "firm"@en, "business"@en, "agency"@en,
    "institution"@en, "university"@en, "startup"@en ;
  rdfs:comment "A social institution such as a company, society or university."@en .

foaf:Group a owl:Class ;
  rdfs:subClassOf foaf:Agent ;
  rdfs:label "Group"@en ;
  skos:altLabel "team"@en ;
  rdfs:comment "A collection of individual agents, possibly with members of its own."@en .

foaf:Document a owl:Class ;
  rdfs:subClassOf schema:Thing ;
  rdfs:label "Document"@en ;
  rdfs:comment "A document: written, printed or electronic."@en .

foaf:Image a owl:Class ;
  rdfs:subClassOf foaf:Document ;
  rdfs:label "Image"@en ;
  skos:altLabel "photo"@en, "picture"@en ;
  rdfs:comment "An image."@en .

foaf:Project a owl:Class ;
  rdfs:subClassOf schema:Thing ;
  rdfs:label "Project"@en ;
  rdfs:comment "A project: a collective endeavour of some kind."@en .

schema:Place a owl:Class ;
  rdfs:subClassOf schema:Thing ;
  rdfs:label "Place"@en ;
  skos:altLabel "location"@en ;
  rdfs:comment "Entities that have a somewhat fixed, physical extension."@en .

schema:AdministrativeArea a owl:Class ;
  rdfs:subClassOf schema:Place ;
  rdfs:label "Administrative area"@en ;
  skos:altLabel "region"@en ;
  rdfs:comment "A geographical region, typically under the jurisdiction of a particular government."@en .

schema:Country a owl:Class ;
  rdfs:subClassOf schema:AdministrativeArea ;
  rdfs:label "Country"@en ;
  skos:altLabel "nation"@en ;
  rdfs:comment "A country."@en .

schema:State a owl:Class ;
  rdfs:subClassOf schema:AdministrativeArea ;
  rdfs:label "State"@en ;
  skos:altLabel "province"@en ;
  rdfs:comment "A state or province of a country."@en .

schema:City a owl:Class ;
  rdfs:subClassOf schema:AdministrativeArea ;
  rdfs:label "City"@en ;
  skos:altLabel "town"@en ;
  rdfs:comment "A city or town."@en .

schema:Event a owl:Class ;
  rdfs:subClassOf schema:Thing ;
  rdfs:label "Event"@en ;
  skos:altLabel "conference"@en, "meeting"@en, "festival"@en ;
  rdfs:comment "An event happening at a certain time and location, such as a concert, lecture or festival."@en .

# --- FOAF properties ----------------------------------------------------------------------------------------

foaf:name a owl:DatatypeProperty ;
  rdfs:label "name"@en ;
  rdfs:range rdfs:Literal ;
  rdfs:comment "A name for some thing."@en .

foaf:givenName a owl:DatatypeProperty ;
  rdfs:label "given name"@en ;
  rdfs:domain foaf:Person ;
  rdfs:range rdfs:Literal ;
  rdfs:comment "The given name of some person."@en .

foaf:familyName a owl:DatatypeProperty ;
  rdfs:label "family name"@en ;
  rdfs:domain foaf:Person ;
  rdfs:range rdfs:Literal ;
  rdfs:comment "The family name of some person."@en .

foaf:nick a owl:DatatypeProperty ;
  rdfs:label "nickname"@en ;
  rdfs:range rdfs:Literal ;
  rdfs:comment "A short informal nickname characterising an agent."@en .

foaf:title a owl:DatatypeProperty ;
  rdfs:label "title"@en ;
  rdfs:range rdfs:Literal ;
  rdfs:comment "A title or honorific such as Mr, Mrs, Ms or Dr."@en .

foaf:knows a owl:ObjectProperty ;
  rdfs:label "knows"@en ;
  rdfs:domain foaf:Person ;
  rdfs:range foaf:Person ;
  rdfs:comment "A person known by this person (indicating some level of reciprocated interaction)."@en .

foaf:mbox a owl:ObjectProperty ;
  rdfs:label "personal mailbox"@en ;
  rdfs:domain foaf:Agent ;
  rdfs:comment "A personal mailbox: a mailto: IRI of an Internet mailbox associated with exactly one owner."@en .

foaf:homepage a owl:ObjectProperty ;
  rdfs:label "homepage"@en ;
  rdfs:range foaf:Document ;
  rdfs:comment "A homepage for some thing."@en .

foaf:member a owl:ObjectProperty ;
  rdfs:label "member"@en ;
  rdfs:domain foaf:Group ;
  rdfs:range foaf:Agent ;
  rdfs:comment "Indicates a member of a group."@en .

foaf:made a owl:ObjectProperty ;
  rdfs:label "made"@en ;
  rdfs:domain foaf:Agent ;
  owl:inverseOf foaf:maker ;
  rdfs:comment "Something that was made by this agent."@en .

foaf:maker a owl:ObjectProperty ;
  rdfs:label "maker"@en ;
  rdfs:range foaf:Agent ;
  rdfs:comment "An agent that made this thing."@en .

foaf:currentProject a owl:ObjectProperty ;
  rdfs:label "current project"@en ;
  rdfs:domain foaf:Person ;
  rdfs:range foaf:Project ;
  rdfs:comment "A current project this person works on."@en .

# --- schema.org properties ----------------------------------------------------------------------------------

schema:worksFor a owl:ObjectProperty ;
  rdfs:label "works for"@en ;
  skos:altLabel "employer"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Organization ;
  rdfs:comment "Organizations that the person works for."@en .

schema:jobTitle a owl:DatatypeProperty ;
  rdfs:label "job title"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes xsd:string ;
  rdfs:comment "The job title of the person (for example, Financial Manager)."@en .

schema:memberOf a owl:ObjectProperty ;
  rdfs:label "member of"@en ;
  schema:domainIncludes foaf:Person, foaf:Organization ;
  schema:rangeIncludes foaf:Organization, foaf:Group ;
  rdfs:comment "An organization (or program membership) to which this person or organization belongs."@en .

schema:alumniOf a owl:ObjectProperty ;
  rdfs:label "alumni of"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Organization ;
  rdfs:comment "An organization that the person is an alumnus of."@en .

schema:colleague a owl:ObjectProperty ;
  rdfs:label "colleague"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Person ;
  rdfs:comment "A colleague of the person."@en .

schema:founder a owl:ObjectProperty ;
  rdfs:label "founder"@en ;
  schema:domainIncludes foaf:Organization ;
  schema:rangeIncludes foaf:Person, foaf:Organization ;
  rdfs:comment "A person or organization who founded this organization."@en .

schema:foundingDate a owl:DatatypeProperty ;
  rdfs:label "founding date"@en ;
  schema:domainIncludes foaf:Organization ;
  schema:rangeIncludes xsd:date ;
  rdfs:comment "The date that this organization was founded."@en .

schema:foundingLocation a owl:ObjectProperty ;
  rdfs:label "founding location"@en ;
  schema:domainIncludes foaf:Organization ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "The place where the organization was founded."@en .

schema:parentOrganization a owl:ObjectProperty ;
  rdfs:label "parent organization"@en ;
  schema:domainIncludes foaf:Organization ;
  schema:rangeIncludes foaf:Organization ;
  owl:inverseOf schema:subOrganization ;
  rdfs:comment "The larger organization that this organization is a sub-organization of, if any."@en .

schema:subOrganization a owl:ObjectProperty ;
  rdfs:label "sub-organization"@en ;
  skos:altLabel "subsidiary"@en, "division"@en ;
  schema:domainIncludes foaf:Organization ;
  schema:rangeIncludes foaf:Organization ;
  rdfs:comment "A relationship between two organizations where the first includes the second."@en .

schema:location a owl:ObjectProperty ;
  rdfs:label "location"@en ;
  schema:domainIncludes foaf:Organization, schema:Event ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "The location of, for example, where an event is happening or an organization is located."@en .

schema:homeLocation a owl:ObjectProperty ;
  rdfs:label "home location"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "A place where the person lives."@en .

schema:containedInPlace a owl:ObjectProperty ;
  rdfs:label "contained in place"@en ;
  schema:domainIncludes schema:Place ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "The basic containment relation between a place and one that contains it."@en .

schema:nationality a owl:ObjectProperty ;
  rdfs:label "nationality"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes schema:Country ;
  rdfs:comment "Nationality of the person."@en .

schema:birthDate a owl:DatatypeProperty ;
  rdfs:label "birth date"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes xsd:date ;
  rdfs:comment "Date of birth."@en .

schema:birthPlace a owl:ObjectProperty ;
  rdfs:label "birth place"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "The place where the person was born."@en .

schema:deathDate a owl:DatatypeProperty ;
  rdfs:label "death date"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes xsd:date ;
  rdfs:comment "Date of death."@en .

schema:deathPlace a owl:ObjectProperty ;
  rdfs:label "death place"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes schema:Place ;
  rdfs:comment "The place where the person died."@en .

schema:spouse a owl:ObjectProperty, owl:SymmetricProperty ;
  rdfs:label "spouse"@en ;
  skos:altLabel "husband"@en, "wife"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Person ;
  rdfs:comment "The person's spouse."@en .

schema:parent a owl:ObjectProperty ;
  rdfs:label "parent"@en ;
  skos:altLabel "father"@en, "mother"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Person ;
  owl:inverseOf schema:children ;
  rdfs:comment "A parent of this person."@en .

schema:children a owl:ObjectProperty ;
  rdfs:label "children"@en ;
  skos:altLabel "child"@en, "son"@en, "daughter"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Person ;
  rdfs:comment "A child of the person."@en .

schema:sibling a owl:ObjectProperty, owl:SymmetricProperty ;
  rdfs:label "sibling"@en ;
  skos:altLabel "brother"@en, "sister"@en ;
  schema:domainIncludes foaf:Person ;
  schema:rangeIncludes foaf:Person ;
  rdfs:comment "A sibling of the person."@en .

schema:email a owl:DatatypeProperty ;
  rdfs:label "email"@en ;
  schema:domainIncludes foaf:Person, foaf:Organization ;
  schema:rangeIncludes xsd:string ;
  rdfs:comment "Email address."@en .

schema:telephone a owl:DatatypeProperty ;
  rdfs:label "telephone"@en ;
  schema:domainIncludes foaf:Person, foaf:Organization ;
  schema:rangeIncludes xsd:string ;
  rdfs:comment "The telephone number."@en .

schema:url a owl:DatatypeProperty ;
  rdfs:label "url"@en ;
  schema:domainIncludes schema:Thing ;
  schema:rangeIncludes xsd:anyURI ;
  rdfs:comment "URL of the item."@en .

schema:startDate a owl:DatatypeProperty ;
  rdfs:label "start date"@en ;
  schema:domainIncludes schema:Event ;
  schema:rangeIncludes xsd:date, xsd:dateTime ;
  rdfs:comment "The start date and time of the item (in ISO 8601 date format)."@en .

schema:endDate a owl:DatatypeProperty ;
  rdfs:label "end date"@en ;
  schema:domainIncludes schema:Event ;
  schema:rangeIncludes xsd:date, xsd:dateTime ;
  rdfs:comment "The end date and time of the item (in ISO 8601 date format)."@en .

schema:organizer a owl:ObjectProperty ;
  rdfs:label "organizer"@en ;
  schema:domainIncludes schema:Event ;
  schema:rangeIncludes foaf:Person, foaf:Organization ;
  rdfs:comment "An organizer of an event."@en .

schema:attendee a owl:ObjectProperty ;
  rdfs:label "attendee"@en ;
  schema:domainIncludes schema:Event ;
  schema:rangeIncludes foaf:Person, foaf:Organization ;
  rdfs:comment "A person or organization attending the event."@en .
`

/**
 * The default ontology, parsed. The text above is fixed and known to parse, so a failure here is a defect.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load: Effect.Effect<Ontology.Ontology> = Ontology.parse(turtle, { source, format: "turtle" }).pipe(
  Effect.orDie,
  Effect.withSpan("DefaultOntology.load")
)

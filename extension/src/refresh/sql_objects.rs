//! SQL objects the maintenance statements name, created with the extension: the row-id
//! equality that only an index scan can use (`ROW_ID_EQ`, `ROW_ID_OPS` in the core's
//! `maintain`), and the lean numeric sum of a change's values (`algebraic::PLAIN_SUM`).

pgrx::extension_sql!(
    r#"
-- bigint equality without hash or merge support: a join on it can only be a nested loop whose
-- inner side looks the row id up in an index of operator class row_id_ops.
CREATE FUNCTION pgtrickle.row_id_eq(bigint, bigint) RETURNS boolean
    LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE AS 'int8eq';
CREATE OPERATOR pgtrickle.== (
    FUNCTION = pgtrickle.row_id_eq, LEFTARG = bigint, RIGHTARG = bigint,
    COMMUTATOR = OPERATOR(pgtrickle.==), RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR CLASS pgtrickle.row_id_ops FOR TYPE bigint USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 pgtrickle.==, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 btint8cmp(bigint, bigint),
    FUNCTION 2 btint8sortsupport(internal),
    FUNCTION 4 btequalimage(oid);

-- sum(numeric) whose state is the running sum, starting from the first value: no accumulator
-- to set up per group, which is what a change spread over many groups mostly has.
CREATE AGGREGATE pgtrickle.plain_sum(numeric) (SFUNC = numeric_add, STYPE = numeric);
"#,
    name = "maintenance_objects",
    requires = ["catalog"]
);
